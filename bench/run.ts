// `npm run bench [kernel|collector|processor ...]`: runs each benchmark in its own process
// (so RSS and CPU figures are its own), one after another on this 2-core machine. Each
// writes its section of docs/benchmarks.md. The services a benchmark starts (this
// checkout's broker, dockerd) are stopped when the run ends; ones running before are left.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAs } from '../common/run-as.js';
import { ensureKafka } from '../test/support/kafka.js';
import { runLimitedDrain } from './processor/memory-limit.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const SERVICES = [
  { script: 'deploy/local/kafka.sh', status: ['status', '--brokers', '1'], stop: ['stop', '--brokers', '1'] },
  { script: 'deploy/local/docker.sh', status: ['status'], stop: ['stop'] },
];
const running = (s: (typeof SERVICES)[number]) =>
  spawnSync('bash', [s.script, ...s.status], { cwd: repo, stdio: 'ignore' }).status === 0;
const runningBefore = SERVICES.filter(running);

const ALL = ['kernel', 'collector', 'processor', 'sidecar'];
const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;
let failed = 0;
for (const name of wanted) {
  const script = new URL(`./${name}/run.ts`, import.meta.url).pathname;
  if (!existsSync(script)) {
    console.error(`[bench] ${name}: no ${script}`);
    failed++;
    continue;
  }
  console.log(`[bench] ${name}`);
  // The processor's benchmark is the processor (chDB and all, in its process): run as one,
  // after its drain inside a memory cgroup of the target (processor/memory-limit.ts), whose
  // broker must run outside that cgroup. Not for BENCH_ONLY's profiling runs.
  let env = process.env;
  if (name === 'processor' && process.env.BENCH_ONLY === undefined) {
    await ensureKafka();
    const resultFile = join(tmpdir(), `ktrail-bench-limited-${process.pid}.json`);
    process.on('exit', () => rmSync(resultFile, { force: true }));
    const limited = await runLimitedDrain(script, resultFile);
    if ('failed' in limited) console.error(`[bench] processor under a memory limit: ${limited.failed}`);
    env = { ...env, BENCH_LIMITED_RESULT: resultFile };
  }
  const run = name === 'processor' ? runAs('processor', script, [], env) : undefined;
  const result =
    run === undefined
      ? spawnSync(process.execPath, ['--import', 'tsx', script], { stdio: 'inherit' })
      : spawnSync(run.command, run.args, { stdio: 'inherit', env: run.env });
  if (result.status !== 0) {
    console.error(`[bench] ${name} failed (exit ${result.status})`);
    failed++;
  }
}
for (const s of SERVICES)
  if (!runningBefore.includes(s) && running(s))
    spawnSync('bash', [s.script, ...s.stop], { cwd: repo, stdio: 'inherit' });
process.exit(failed > 0 ? 1 : 0);
