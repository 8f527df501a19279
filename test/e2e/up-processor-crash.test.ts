// A crashed processor is not an outage of capture (issue #13, item 8). Under a real
// `./ktrail up` and a steady exec load, the processor is SIGKILLed three times: up restarts it
// each time while the collector (never restarted) keeps capturing into Kafka; every exec the
// load ran is in SQL exactly once; each restarted processor is back in its group within 10 s
// (the dead member's session timeout, processor.sessionTimeoutMs, bounds the wait).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { itReal, missingRoot } from '../support/real.js';
import { processesOf, runningBanner, startUp, type UpStack } from '../support/up-stack.js';
import { waitFor } from '../support/wait.js';

const it = itReal(missingRoot());
const KILLS = 3;
const JOINED = 'Consumer has joined the group';

/** ~15 execs/s of `/bin/true <marker>-<i>` until `<stop>` exists; the count goes to `<count>`. */
function execLoad(marker: string, stop: string, count: string): ChildProcess {
  const script = `i=0; while [ ! -e '${stop}' ]; do i=$((i+1)); /bin/true '${marker}'-$i; sleep 0.05; done; echo $i > '${count}'`;
  return spawn('bash', ['-c', script], { stdio: 'ignore' });
}

describe('./ktrail up keeps capturing while the processor crashes', () => {
  let stack: UpStack | undefined;
  let load: ChildProcess | undefined;
  afterAll(async () => {
    load?.kill('SIGKILL');
    await stack?.cleanup();
  });

  it('three SIGKILLs of the processor under an exec load: every exec in SQL once, each rejoin within 10 s', async () => {
    const s = await startUp({
      name: 'up-crash',
      docker: false,
      env: { KTRAIL_COLLECTOR_BATCH_MAX_MS: '200' },
    });
    stack = s;
    await s.line('the pipeline running', runningBanner, 300_000);
    const collector = s.state()?.collector;
    expect(collector).toBeDefined();

    const marker = `${s.node}-exec`;
    const stopFile = join(s.cache, 'load.stop');
    const countFile = join(s.cache, 'load.count');
    load = execLoad(marker, stopFile, countFile);
    const inSql = async (): Promise<{ n: number; distinct: number }> => {
      const [row] = await s.sql(
        `SELECT count() AS n, uniqExact(args[2]) AS d FROM ktrail.proc_exec
         WHERE node = '${s.node}' AND startsWith(args[2], '${marker}-')`,
      );
      return { n: Number(row?.n ?? 0), distinct: Number(row?.d ?? 0) };
    };

    const rejoins: Array<{ joinMs: number; killToJoinMs: number }> = [];
    let seen = 0;
    for (let k = 1; k <= KILLS; k++) {
      // Kill a processor that is in the group and writing: SQL has moved since the last kill.
      const before = seen;
      seen = await waitFor(
        `run ${k}: new execs in SQL`,
        async () => {
          const { n } = await inSql().catch(() => ({ n: 0 }));
          return n > before ? n : undefined;
        },
        120_000,
        500,
      );
      const victim = s.state()?.processor;
      expect(victim).toBeDefined();
      const from = s.lines.length;
      const killedAt = Date.now();
      process.kill(victim?.pid as number, 'SIGKILL');
      const restarted = await waitFor(
        `run ${k}: the processor restarted`,
        () => {
          const p = s.state()?.processor;
          return p !== undefined && p.pid !== victim?.pid ? p : undefined;
        },
        60_000,
        100,
      );
      const joined = await s.line(
        `run ${k}: the restarted processor in its group`,
        (l) => l.json?.msg === JOINED && l.json.pid === restarted.pid,
        60_000,
        from,
      );
      const rejoin = {
        joinMs: Number(joined.json?.duration),
        killToJoinMs: Date.parse(String(joined.json?.time)) - killedAt,
      };
      console.log(`[up-crash] kill ${k}: ${JSON.stringify(rejoin)}`);
      rejoins.push(rejoin);
    }
    // Some steady running after the last rejoin, then the load stops and everything lands.
    await new Promise((r) => setTimeout(r, 5_000));
    writeFileSync(stopFile, '');
    const ran = await waitFor(
      'the load to stop',
      () => {
        try {
          return Number(readFileSync(countFile, 'utf8').trim()) || undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      200,
    );
    const final = await waitFor(
      `all ${ran} execs in SQL`,
      async () => {
        const got = await inSql().catch(() => undefined);
        return got !== undefined && got.n >= ran ? got : undefined;
      },
      120_000,
      1_000,
    );
    console.log(`[up-crash] load ran ${ran} execs; SQL has ${final.n} rows, ${final.distinct} distinct`);
    expect(final).toEqual({ n: ran, distinct: ran });

    // Capture never stopped: the first collector is the one still running.
    expect(s.state()?.collector).toEqual(collector);
    expect(s.lines.some((l) => /^\[up\] collector (exited|restarted)/.test(l.raw))).toBe(false);
    expect(rejoins).toHaveLength(KILLS);
    for (const r of rejoins) {
      expect(r.joinMs).toBeLessThanOrEqual(10_000);
      expect(r.killToJoinMs).toBeLessThanOrEqual(10_000);
    }

    const stopped = await s.stop();
    expect(stopped.code).toBe(0);
    expect(await s.upExit).toBe(0);
    await waitFor(
      'no process of the stack left',
      () => (processesOf(s.cache).length === 0 ? true : undefined),
      30_000,
      500,
    );
  });
});
