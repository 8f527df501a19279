// The real Kafka broker for integration and e2e tests, through deploy/local/kafka.sh (the
// same script a person runs). The single broker is shared by every test file (each test
// uses its own topics); a three-node cluster on other ports is started on demand by the
// failover tests, so the single broker stays up while it runs.
//
// The broker has auto.create.topics.enable=false: create test topics with createTopics().
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { validateConfig } from '../../common/config.js';
import { fixKafkajsIdleTimer } from '../../common/kafka.js';
import { createTopicsAndWait } from '../../common/kafka-topics.js';
import { freePorts } from './ports.js';

const run = promisify(execFile);

export type KafkaEndpoint = { brokers: string[] };

const script = fileURLToPath(new URL('../../deploy/local/kafka.sh', import.meta.url));
const HOST = '127.0.0.1';
/** The topic prefix the pipeline runs with unless told otherwise (`./ktrail up`). */
const PIPELINE_PREFIX = validateConfig({}).kafka.topicPrefix;
const singlePort = (): number => Number(process.env.KTRAIL_KAFKA_PORT ?? 19092);
const cluster3Ports = (): number[] => {
  const base = Number(process.env.KTRAIL_KAFKA3_PORT ?? 29092);
  return [base, base + 2, base + 4];
};

/**
 * The broker tests use. KTRAIL_KAFKA_BROKERS points at an existing Kafka (used as is);
 * otherwise this checkout's broker on 127.0.0.1:KTRAIL_KAFKA_PORT (19092) is reused (one
 * `./ktrail up` started), else `kafka.sh start` installs and starts one. A port held by
 * anything else (another checkout's broker) is an error: two checkouts never share daemons.
 */
export async function ensureKafka(): Promise<KafkaEndpoint> {
  const external = process.env.KTRAIL_KAFKA_BROKERS;
  if (external) {
    const brokers = external.split(',').map((b) => b.trim());
    await assertKafkaAnswers(brokers);
    return { brokers };
  }
  const brokers = [`${HOST}:${singlePort()}`];
  if (await portOpen(HOST, singlePort())) {
    // status exits 1 when this checkout runs no broker: that is the case to name, not a failure.
    const { stdout } = await run(script, ['status']).catch((err: { stdout?: string }) => ({
      stdout: err.stdout ?? '',
    }));
    if (!/cluster 1 node 1: running/.test(stdout))
      throw new Error(
        `${brokers[0]} is held by a process this checkout did not start (another checkout's broker?): ` +
          'stop it, or give this checkout its own port with KTRAIL_KAFKA_PORT',
      );
    await assertKafkaAnswers(brokers);
    return { brokers };
  }
  await assertTools();
  await kafkaSh(['start']);
  await assertKafkaAnswers(brokers);
  return { brokers };
}

/** A topic name no other test (or earlier run) uses: `<prefix>-<time>-<random>`. */
export function uniqueTopic(prefix = 'test'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export interface TestTopic {
  topic: string;
  partitions?: number;
  replicationFactor?: number;
  configEntries?: { name: string; value: string }[];
}

/** Creates topics and waits until every partition has a leader; fails if they all exist. */
export async function createTopics(endpoint: KafkaEndpoint, topics: TestTopic[]): Promise<void> {
  const admin = quietKafka(endpoint.brokers, 'ktrail-test-admin').admin();
  await admin.connect();
  try {
    const created = await createTopicsAndWait(
      admin,
      topics.map((t) => ({
        topic: t.topic,
        numPartitions: t.partitions ?? 1,
        replicationFactor: t.replicationFactor ?? 1,
        configEntries: t.configEntries ?? [],
      })),
    );
    if (!created) throw new Error(`topics already exist: ${topics.map((t) => t.topic).join(', ')}`);
  } finally {
    await admin.disconnect();
  }
}

/** Deletes topics a test created (best effort: a test's result doesn't depend on it). */
export async function deleteTopics(endpoint: KafkaEndpoint, topics: string[]): Promise<void> {
  const admin = quietKafka(endpoint.brokers, 'ktrail-test-admin').admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics });
  } catch {
    // The broker may be gone already (failover tests); the data dir is disposable.
  } finally {
    await admin.disconnect();
  }
}

/** The broker's topics, internal ones (`__consumer_offsets`) left out. */
export async function listTopics(endpoint: KafkaEndpoint): Promise<string[]> {
  const admin = quietKafka(endpoint.brokers, 'ktrail-test-admin').admin();
  try {
    await admin.connect();
    return (await admin.listTopics()).filter((t) => !t.startsWith('__'));
  } finally {
    await admin.disconnect();
  }
}

/**
 * Deletes, when the run ends, the topics the run created on the broker: a checkout keeps its
 * broker's data between runs (in its cache, deploy/local/kafka.sh), and each run's uniquely
 * prefixed topics would otherwise pile up there (thousands of partition directories slow
 * every later run and benchmark). Topics under the pipeline's own prefix are left alone: a
 * `./ktrail up` on the same broker owns those. When the topics can't be listed at the start,
 * nothing is deleted at the end.
 */
export async function dropTopicsCreatedSince(endpoint: KafkaEndpoint): Promise<() => Promise<void>> {
  const listed = await listTopics(endpoint).catch(() => undefined);
  if (listed === undefined) return async () => {};
  const before = new Set(listed);
  return async () => {
    const after = await listTopics(endpoint).catch(() => []);
    const created = after.filter((t) => !before.has(t) && !t.startsWith(PIPELINE_PREFIX));
    for (let i = 0; i < created.length; i += 500) await deleteTopics(endpoint, created.slice(i, i + 500));
    console.log(
      `[global-setup] deleted ${created.length} topics the run created (${before.size} were there before)`,
    );
  };
}

// --- the three-node cluster (failover tests) -------------------------------------------------

/** Starts (or reuses) the 3-node KRaft cluster on KTRAIL_KAFKA3_PORT (29092), +2, +4; ~20-60 s. */
export async function startCluster3(): Promise<KafkaEndpoint> {
  await assertTools();
  await kafkaSh(['start', '--brokers', '3']);
  const brokers = cluster3Ports().map((p) => `${HOST}:${p}`);
  await assertKafkaAnswers(brokers);
  return { brokers };
}

/** Stops the whole 3-node cluster (its data stays; `kafka.sh clean` deletes it). */
export async function stopCluster3(): Promise<void> {
  await kafkaSh(['stop', '--brokers', '3']);
}

/** Stops node 1..3 of the cluster: a controlled shutdown, or SIGKILL with `{ kill: true }`. */
export async function stopCluster3Node(node: 1 | 2 | 3, options: { kill?: boolean } = {}): Promise<void> {
  await kafkaSh(['stop', '--brokers', '3', '--node', String(node), ...(options.kill ? ['--kill'] : [])]);
}

/** Brings a stopped node back and waits until it serves again. */
export async function startCluster3Node(node: 1 | 2 | 3): Promise<void> {
  await kafkaSh(['start', '--brokers', '3', '--node', String(node)]);
}

/** The node that is the cluster's KRaft active controller now (kafka.sh quorum, DescribeQuorum). */
export async function activeController(): Promise<number> {
  const out = await kafkaSh(['quorum', '--brokers', '3']);
  const leader = /^leader (-?\d+) /m.exec(out);
  if (!leader) throw new Error(`kafka.sh quorum printed no leader: ${out.trim()}`);
  return Number(leader[1]);
}

/**
 * The broker coordinating consumer group `groupId`: the leader of its __consumer_offsets
 * partition, which Kafka picks as abs(Java hashCode of the id) % the topic's partitions.
 */
export async function groupCoordinator(endpoint: KafkaEndpoint, groupId: string): Promise<number> {
  const admin = quietKafka(endpoint.brokers, 'ktrail-test-coordinator').admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: ['__consumer_offsets'] });
    const partitions = topics[0]?.partitions ?? [];
    let hash = 0;
    for (let i = 0; i < groupId.length; i++) hash = (Math.imul(hash, 31) + groupId.charCodeAt(i)) | 0;
    const abs = hash === -2147483648 ? 0 : Math.abs(hash); // Kafka's Utils.abs
    const partition = abs % partitions.length;
    return partitions.find((p) => p.partitionId === partition)?.leader ?? -1;
  } finally {
    await admin.disconnect();
  }
}

/** What a broker log says about its node's life: starts, shutdowns, state changes, errors. */
const LIFECYCLE = /Kafka Server started|Transition from \w+ to \w+|\] (ERROR|FATAL) /;
const LOG_TIME = /^\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d),(\d{3})\] /;

/**
 * Where the cluster stands for a failed failover run: `kafka.sh status` and, per node, the
 * last `perNode` lines of its broker log since `sinceMs` that mark a start, a shutdown, a
 * state change or an error (whether a broker went away on its own, and when).
 */
export async function cluster3Diagnosis(sinceMs: number, perNode = 8): Promise<string> {
  const status = await run(script, ['status', '--brokers', '3']).then(
    (r) => r.stdout,
    (err: { stdout?: string; message: string }) => err.stdout ?? err.message,
  );
  const parts = [status.trim()];
  for (const node of [1, 2, 3]) {
    const { stdout } = await run(script, ['logs', '--brokers', '3', '--node', String(node), '--path']);
    const file = stdout.trim();
    const lines = [`${file}.prev`, file]
      .filter((f) => existsSync(f))
      .flatMap((f) => readFileSync(f, 'utf8').split('\n'))
      .filter((l) => {
        const t = LOG_TIME.exec(l);
        // The JVM and Node both log in the machine's local time.
        return t !== null && new Date(`${t[1]}T${t[2]}.${t[3]}`).getTime() >= sinceMs && LIFECYCLE.test(l);
      })
      .slice(-perNode)
      .map((l) => `  ${l.slice(12, 24)} ${l.slice(26, 206)}`);
    parts.push(`node ${node} (${file}):`, ...lines);
  }
  return parts.join('\n');
}

/**
 * Waits until every partition of `topics` has a leader and all its replicas in sync: a
 * restarted node has caught up, so the next one may go down without losing a copy.
 */
export async function waitInSync(
  endpoint: KafkaEndpoint,
  topics: string[],
  timeoutMs = 120_000,
): Promise<void> {
  const admin = quietKafka(endpoint.brokers, 'ktrail-test-isr').admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      try {
        const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
        const lagging = metadata.flatMap((t) =>
          t.partitions
            .filter((p) => p.leader < 0 || p.isr.length < p.replicas.length)
            .map((p) => `${t.name}/${p.partitionId} leader ${p.leader} isr [${p.isr}] of [${p.replicas}]`),
        );
        if (lagging.length === 0) return;
        last = lagging.join('; ');
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`replicas not in sync after ${timeoutMs} ms: ${last}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await admin.disconnect();
  }
}

// --- a broker of a test's own (outage tests) -------------------------------------------------

/** The broker jars kafka.sh installs (the shared broker being up means they are there). */
export const sharedKafkaLibs = join(
  process.env.KTRAIL_KAFKA_CACHE ?? fileURLToPath(new URL('../../.cache/kafka', import.meta.url)),
  'libs',
);

export interface PrivateBroker {
  brokers: string[];
  /** Starts it (again) on the same port and data dir; waits until it serves. */
  start(): Promise<void>;
  /** Stops it (kafka.sh stop); its data stays for the next start. */
  stop(): Promise<void>;
  /** The running broker's pid (to freeze it with SIGSTOP). */
  pid(): number;
}

/**
 * A single broker on a free port pair with its data under `workDir`, from the shared jars:
 * a test can stop it for an outage while every other test keeps the shared broker. Not
 * started yet; stop() it in afterAll (a stopped one is fine to stop again).
 */
export async function privateBroker(workDir: string): Promise<PrivateBroker> {
  const cache = join(workDir, 'kafka');
  mkdirSync(cache, { recursive: true });
  if (!existsSync(join(cache, 'libs'))) symlinkSync(sharedKafkaLibs, join(cache, 'libs'));
  const [port, controllerPort] = await freePorts(2);
  const env = {
    ...process.env,
    KTRAIL_KAFKA_CACHE: cache,
    KTRAIL_KAFKA_PORT: String(port),
    KTRAIL_KAFKA_CONTROLLER_PORT: String(controllerPort),
    KTRAIL_KAFKA_HEAP: '256m',
  };
  const sh = async (action: 'start' | 'stop') => {
    await run(script, [action, '--brokers', '1'], { env, timeout: 240_000 });
  };
  return {
    brokers: [`${HOST}:${port}`],
    start: () => sh('start'),
    stop: () => sh('stop'),
    pid: () => Number(readFileSync(join(cache, 'data-single-1', 'broker.pid'), 'utf8')),
  };
}

// --- helpers ---------------------------------------------------------------------------------

/** A kafkajs client for test plumbing that only logs errors. */
export function quietKafka(brokers: string[], clientId: string): Kafka {
  // The same idle-timer fix the product's clients get: no 1 ms timer loop per connection in tests.
  fixKafkajsIdleTimer();
  return new Kafka({ brokers, clientId, logLevel: logLevel.NOTHING, retry: { retries: 5 } });
}

async function kafkaSh(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(script, args, { timeout: 600_000 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    const detail = `${e.stdout ?? ''}\n${e.stderr ?? ''}`.trim() || e.message;
    throw new Error(
      `deploy/local/kafka.sh ${args.join(' ')} failed: ${detail.split('\n').slice(-8).join(' | ')}`,
    );
  }
}

async function assertTools(): Promise<void> {
  const missing: string[] = [];
  if (!(await which('java'))) missing.push('java (apt-get install -y openjdk-17-jre-headless)');
  // Maven is only needed until the broker jars are cached; kafka.sh says so if they aren't.
  if (!(await which('mvn'))) {
    const libs = fileURLToPath(new URL('../../.cache/kafka/libs/.pom.sha256', import.meta.url));
    if (!existsSync(libs)) missing.push('mvn (apt-get install -y maven)');
  }
  if (missing.length > 0) throw new Error(`cannot start Kafka, missing: ${missing.join(', ')}`);
}

async function which(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.connect(port, host);
  });
}

/** Something answering on a port is not necessarily Kafka: ask it for cluster metadata. */
async function assertKafkaAnswers(brokers: string[]): Promise<void> {
  const admin = quietKafka(brokers, 'ktrail-test-probe').admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (cluster.brokers.length === 0) throw new Error('no brokers in cluster metadata');
  } catch (err) {
    throw new Error(`no Kafka answering at ${brokers.join(',')}: ${(err as Error).message}`);
  } finally {
    await admin.disconnect();
  }
}
