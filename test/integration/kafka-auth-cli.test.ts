// The collector and processor CLIs as processes against the real broker's SASL_SSL
// listener (test/support/secure-kafka.ts), configured from the environment only, as a
// Kubernetes pod would be: KTRAIL_KAFKA_SASL_* with the password inline or in a file,
// KTRAIL_KAFKA_TLS_CA_FILE. Every line they print, at debug level (kafkajs' own debug lines
// included), is searched for the passwords, right and wrong: none may appear.
//  - collector, wrong password in its file: keeps capturing and holding (metrics), then the
//    file is fixed, it delivers, and on SIGTERM its final counters balance with nothing
//    dropped; the topic holds what it says it delivered;
//  - processor, wrong password: exits 1 naming the mechanism and user;
//  - processor, right password from a file: every event lands in its chDB store.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { createKafka } from '../../common/kafka.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { itReal } from '../support/real.js';
import { type SecureBroker, secureBrokerMissing, startSecureBroker } from '../support/secure-kafka.js';
import { waitFor } from '../support/wait.js';

const execFileAsync = promisify(execFile);
const missing = secureBrokerMissing();
const work = mkdtempSync(join(tmpdir(), 'ktrail-kafka-auth-cli-'));
const prefix = `authcli-${Date.now().toString(36)}.`;
const WRONG = `wrong-${Date.now().toString(36)}-pw`;
const EVENT_TABLES = [
  'tcp_close',
  'tcp_connect',
  'tcp_accept',
  'proc_fork',
  'proc_exit',
  'proc_exec',
  'tcp_reset',
  'cgroup_mkdir',
  'cgroup_rmdir',
  'oom_kill',
];

let broker: SecureBroker;
let capture: string;
const outputs: string[] = [];
const children: ChildProcess[] = [];
let delivered = 0;
/** How `text` appears inside a JSON log line. */
const logged = (text: string): string => JSON.stringify(text).slice(1, -1);

beforeAll(async () => {
  if (missing !== undefined) return;
  broker = await startSecureBroker(work);
  capture = join(work, 'stream.ktcap');
  await writeSyntheticCapture(capture, { records: 2_000, perBatch: 100 });
}, 240_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await broker?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

/** A CLI with only the given KTRAIL_* settings (none inherited), stdout and stderr kept. */
function cli(script: string, args: string[], settings: Record<string, string>): Run {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KTRAIL_')) env[k] = v;
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: REPO_ROOT,
    env: { ...env, KTRAIL_LOG_LEVEL: 'debug', ...settings },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  children.push(child);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const run = { child, output: () => out, exit };
  void exit.then(() => outputs.push(out));
  return run;
}

function kafkaEnv(mechanism: string, user: string): Record<string, string> {
  return {
    KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
    KTRAIL_KAFKA_TOPIC_PREFIX: prefix,
    KTRAIL_KAFKA_PARTITIONS: '2',
    KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
    KTRAIL_KAFKA_SASL_MECHANISM: mechanism,
    KTRAIL_KAFKA_SASL_USERNAME: user,
    KTRAIL_HTTP_PORT: '0',
  };
}

/** Sum of a metric's samples in a Prometheus text page. */
function metric(page: string, name: string): number {
  return page
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('collector and processor CLIs on SASL_SSL, configured from the environment', () => {
  itReal(missing)(
    'collector: a wrong password file holds everything, the fixed file delivers it, no password in its output',
    async () => {
      const pwFile = join(work, 'collector.pw');
      writeFileSync(pwFile, `${WRONG}\n`, { mode: 0o600 });
      const run = cli(
        'collector/src/cli.ts',
        ['--replay', capture, '--replay-rate', '500', '--replay-loop'],
        {
          ...kafkaEnv('SCRAM-SHA-256', broker.users.scram256.username),
          KTRAIL_KAFKA_SASL_PASSWORD_FILE: pwFile,
          KTRAIL_NODE: 'cli-node',
          KTRAIL_COLLECTOR_BATCH_MAX_MS: '200',
        },
      );
      const port = await waitFor(
        'the metrics port',
        () => /"port":(\d+)[^\n]*metrics on \/metrics/.exec(run.output())?.[1],
        60_000,
        200,
      );
      const page = () => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      await waitFor(
        'failed sends',
        async () => (metric(await page(), 'ktrail_collector_kafka_errors_total') >= 3 ? true : undefined),
        60_000,
        250,
      );
      const held = await page();
      expect(metric(held, 'ktrail_collector_events_captured_total')).toBeGreaterThan(0);
      expect(metric(held, 'ktrail_collector_events_delivered_total')).toBe(0);
      expect(metric(held, 'ktrail_collector_events_dropped_total')).toBe(0);
      expect(metric(held, 'ktrail_collector_events_pending')).toBeGreaterThan(0);
      expect(run.output()).toContain(
        logged(`SASL SCRAM-SHA-256 authentication failed for user "${broker.users.scram256.username}"`),
      );

      writeFileSync(pwFile, `${broker.users.scram256.password}\n`);
      const capturedAtFix = metric(await page(), 'ktrail_collector_events_captured_total');
      await waitFor(
        'the backlog delivered',
        async () =>
          metric(await page(), 'ktrail_collector_events_delivered_total') >= capturedAtFix ? true : undefined,
        60_000,
        250,
      );
      run.child.kill('SIGTERM');
      expect(await run.exit).toBe(0);
      const final =
        /collector stopped: captured (\d+), delivered (\d+), dropped (\d+) .*pending (\d+), unaccounted (-?\d+)/.exec(
          run.output(),
        );
      expect(final).not.toBeNull();
      const [captured, sent, dropped, pending, unaccounted] = (final ?? []).slice(1).map(Number);
      expect({ dropped, pending, unaccounted }).toEqual({ dropped: 0, pending: 0, unaccounted: 0 });
      expect(sent).toBe(captured);
      delivered = sent as number;

      const resolver = createSchemaResolver();
      const bySeq = new Map<bigint, number>();
      for (const m of await readTopic(broker.plaintext, topicNames(prefix).events)) {
        const b = resolver.decodeAs('EventBatch', m.value) as EventBatch;
        bySeq.set(b.sequence, b.events.length);
      }
      expect([...bySeq.values()].reduce((a, n) => a + n, 0)).toBe(delivered);
    },
    150_000,
  );

  itReal(missing)(
    'processor: a wrong password exits 1 naming mechanism and user; the right one from a file stores every event',
    async () => {
      expect(delivered).toBeGreaterThan(0); // the collector test filled the topics
      const { username, password } = broker.users.scram512;
      const base = {
        ...kafkaEnv('scram-sha-512', username),
        KTRAIL_NODE: 'cli-processor',
        KTRAIL_PROCESSOR_GROUP_ID: `${prefix}group`,
        KTRAIL_PROCESSOR_QUERY_PORT: '0',
        KTRAIL_PROCESSOR_BATCH_MAX_MS: '300',
      };

      const shown = cli('processor/src/cli.ts', ['--print-config'], {
        ...base,
        KTRAIL_KAFKA_SASL_PASSWORD: password,
      });
      expect(await shown.exit).toBe(0);
      expect(JSON.parse(shown.output()).kafka.sasl).toMatchObject({ username, password: '[secret]' });

      const wrong = cli('processor/src/cli.ts', [], {
        ...base,
        KTRAIL_KAFKA_SASL_PASSWORD: WRONG,
        KTRAIL_CLICKHOUSE_CHDB_PATH: join(work, 'chdb-wrong'),
      });
      expect(await wrong.exit).toBe(1);
      expect(wrong.output()).toContain(
        logged(`SASL SCRAM-SHA-512 authentication failed for user "${username}"`),
      );

      const pwFile = join(work, 'processor.pw');
      writeFileSync(pwFile, password, { mode: 0o600 });
      const chdb = join(work, 'chdb');
      const right = cli('processor/src/cli.ts', [], {
        ...base,
        KTRAIL_KAFKA_SASL_PASSWORD_FILE: pwFile,
        KTRAIL_CLICKHOUSE_CHDB_PATH: chdb,
      });
      const admin = createKafka(
        { brokers: broker.plaintext, clientId: 'test-admin' },
        createLogger('test'),
      ).admin();
      await admin.connect();
      try {
        const topic = topicNames(prefix).events;
        const end = (await admin.fetchTopicOffsets(topic)).reduce((s, p) => s + Number(p.high), 0);
        await waitFor(
          'the processor committed every event message',
          async () => {
            const [t] = await admin.fetchOffsets({ groupId: `${prefix}group`, topics: [topic] });
            const done = (t?.partitions ?? []).reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
            return done >= end ? true : undefined;
          },
          90_000,
          500,
        );
      } finally {
        await admin.disconnect();
      }
      right.child.kill('SIGTERM');
      expect(await right.exit).toBe(0);
      const { stdout } = await execFileAsync(
        process.execPath,
        ['--import', 'tsx', 'bench/processor/count-rows.ts', chdb, 'ktrail', ...EVENT_TABLES],
        { cwd: REPO_ROOT, timeout: 120_000 },
      );
      const counts = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, { rows: number }>;
      expect(Object.values(counts).reduce((s, c) => s + c.rows, 0)).toBe(delivered);
    },
    150_000,
  );

  itReal(missing)('no password, right or wrong, in any line either CLI printed', () => {
    expect(outputs.length).toBeGreaterThanOrEqual(4);
    const all = outputs.join('\n');
    expect(all).toContain('SASL'); // the runs did log their authentication
    for (const secret of [WRONG, broker.users.scram256.password, broker.users.scram512.password])
      expect(all).not.toContain(secret);
  });
});
