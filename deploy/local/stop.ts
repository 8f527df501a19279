// `./ktrail stop`, first part: the pipeline `./ktrail up` runs in this checkout (or this
// KTRAIL_CACHE), found through <cache>/up/pipeline.json (pipeline-state.ts). It asks `up`
// to stop (SIGTERM: up stops the collector, then the processor, then what it started) and
// waits for it. If `up` is gone or does not finish in time, it stops what `up` left itself,
// in the same order: collector (it flushes), then processor (it writes what the collector
// sent). Each gets SIGTERM, then SIGKILL at its deadline; every SIGKILL is said and makes
// the exit code 1. The ktrail script then stops the brokers and the container runtimes this
// checkout started (their own pid files), whoever started them.
import { fileURLToPath } from 'node:url';
import { alive, type ProcessRef, readState, removeState, stateFile, terminate } from './pipeline-state.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const say = (msg: string) => console.log(`[stop] ${msg}`);

// up's own ordered stop takes at most 30 s (collector) + 45 s (processor) + the broker's 30 s.
const UP_MS = 120_000;
const DEADLINES_MS = { collector: 30_000, processor: 45_000 } as const;

async function main(): Promise<number> {
  const file = stateFile(root);
  const state = readState(file);
  if (state === undefined) {
    say('no pipeline started by ./ktrail up here');
    return 0;
  }
  const killed: string[] = [];
  if (alive(state.up)) {
    say(`asking ./ktrail up (pid ${state.up.pid}) to stop the pipeline in order`);
    const how = await terminate(state.up, UP_MS);
    if (how === 'killed') {
      say(`./ktrail up did not finish within ${UP_MS / 1000} s: SIGKILL; stopping what it left`);
      killed.push('up');
    } else say('./ktrail up has stopped');
  }
  for (const name of ['collector', 'processor'] as const) {
    const ref: ProcessRef | undefined = state[name];
    if (!alive(ref)) continue;
    say(`stopping the ${name} (pid ${ref?.pid}) left by ./ktrail up`);
    const how = await terminate(ref, DEADLINES_MS[name]);
    if (how === 'killed') {
      say(`${name} did not exit within ${DEADLINES_MS[name] / 1000} s of SIGTERM: SIGKILL`);
      killed.push(name);
    }
  }
  removeState(file);
  if (killed.length > 0) say(`${killed.length} process(es) needed SIGKILL: ${killed.join(', ')}`);
  return killed.length === 0 ? 0 : 1;
}

process.exit(await main());
