// A steady load over every partition of an events topic, for the processor's memory tests:
// one synthetic node per partition (the collector's partitioner places nodes by key), each
// sending one EventBatch of cpu_samples per tick; the processor's settings for it, its process
// in a memory cgroup, and its Prometheus gauges.
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { type Kafka, Partitioners } from 'kafkajs';
import { nodeProducer } from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import type { MemoryCgroup } from './memory-cgroup.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The memory tests' load: 24 nodes x 200 events x 4/s = 19,200 events/s over 24 partitions. */
export const STEADY_LOAD = { partitions: 24, eventsPerMessage: 200, tickMs: 250 } as const;

/** One node name per partition, as the collector's partitioner places them (murmur2 of the node). */
export function nodesCoveringPartitions(partitions: number, prefix: string): string[] {
  const place = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({
    partitionId: i,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  const byPartition = new Map<number, string>();
  for (let i = 0; byPartition.size < partitions; i++) {
    const node = `${prefix}-${i}`;
    const p = place({ topic: 't', partitionMetadata, message: { key: node, value: null } });
    if (!byPartition.has(p)) byPartition.set(p, node);
  }
  return [...byPartition.values()];
}

export interface PartitionLoad {
  /** Events and messages sent so far. */
  produced: number;
  messages: number;
  /** Stops after the tick in flight; resolves once the producer is closed. */
  stop(): Promise<void>;
}

/** One EventBatch of `eventsPerMessage` per node every `tickMs`, until stopped. */
export async function startPartitionLoad(
  client: Kafka,
  topic: string,
  nodePrefix: string,
  o: { partitions: number; eventsPerMessage: number; tickMs: number } = STEADY_LOAD,
): Promise<PartitionLoad> {
  const producer = await nodeProducer(client);
  const nodes = nodesCoveringPartitions(o.partitions, nodePrefix).map(
    (node) => new SyntheticNode({ node, containers: 4 }),
  );
  const load: PartitionLoad = { produced: 0, messages: 0, stop: async () => {} };
  let producing = true;
  const loop = (async () => {
    for (let next = Date.now(); producing; next += o.tickMs) {
      await producer.send({
        topic,
        messages: nodes.map((n) => ({ key: n.node, value: n.next(o.eventsPerMessage) })),
      });
      load.produced += nodes.length * o.eventsPerMessage;
      load.messages += nodes.length;
      await sleep(Math.max(0, next + o.tickMs - Date.now()));
    }
  })();
  load.stop = async () => {
    producing = false;
    await loop;
    await producer.disconnect();
  };
  return load;
}

/** Prometheus text -> value of an unlabelled-but-default-labelled gauge. */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

/**
 * The settings a processor under this load runs with: the load's topics and partitions, a
 * group of its own, its HTTP port, and no wait for container records (the load sends none).
 */
export function processorSettingsForLoad(
  brokers: string[],
  prefix: string,
  partitions: number,
  httpPort: number,
): string[] {
  return [
    `kafka.brokers=${brokers.join(',')}`,
    `kafka.topicPrefix=${prefix}`,
    `kafka.partitions=${partitions}`,
    `processor.groupId=${prefix}group`,
    'processor.lateMetadataWaitMs=0',
    `http.port=${httpPort}`,
  ];
}

export interface LoggedProcess {
  child: ChildProcess;
  /** How it exited, once it has. */
  exit(): { code: number | null; signal: string | null } | undefined;
  /** The last lines of its output, for a failure message. */
  tail(): string;
}

/** Starts a command in a memory cgroup with its output in `logFile`, watching for its exit. */
export function spawnLogged(
  group: MemoryCgroup,
  command: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): LoggedProcess {
  const child = group.spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  let exited: { code: number | null; signal: string | null } | undefined;
  child.once('exit', (code, signal) => {
    exited = { code, signal };
  });
  return {
    child,
    exit: () => exited,
    tail: () => readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n'),
  };
}
