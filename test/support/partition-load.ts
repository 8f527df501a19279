// A steady load over every partition of an events topic, for the processor's memory tests:
// one synthetic node per partition (the collector's partitioner places nodes by key), each
// sending one EventBatch of cpu_samples per tick, and the processor's Prometheus gauges.
import { type Kafka, Partitioners } from 'kafkajs';
import { nodeProducer } from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  o: { partitions: number; eventsPerMessage: number; tickMs: number; nodePrefix: string },
): Promise<PartitionLoad> {
  const producer = await nodeProducer(client);
  const nodes = nodesCoveringPartitions(o.partitions, o.nodePrefix).map(
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
