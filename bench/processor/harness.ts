// Shared by the processor's integration tests and benchmark: topics with a unique prefix,
// a producer that partitions like the collector (by node), and processor options.
import { type Kafka, Kafka as KafkaClient, logLevel, type Producer } from 'kafkajs';
import { nodePartitioner } from '../../collector/src/kafka-sink.js';
import { ensureTopics, type TopicNames } from '../../common/kafka-topics.js';
import type { ProcessorOptions } from '../../processor/src/processor.js';

export function kafkaClient(brokers: string[], clientId = 'ktrail-processor-test'): Kafka {
  return new KafkaClient({
    brokers,
    clientId,
    logLevel: logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 200 },
  });
}

export async function createTestTopics(
  kafka: Kafka,
  prefix: string,
  partitions: number,
): Promise<TopicNames> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await ensureTopics(admin, { prefix, partitions })).names;
  } finally {
    await admin.disconnect();
  }
}

export { processorTopics } from '../../processor/src/processor.js';

/** A producer keyed like the collector's: events by `node`, container records by `node/cgroup`. */
export async function nodeProducer(kafka: Kafka): Promise<Producer> {
  const producer = kafka.producer({ createPartitioner: nodePartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  return producer;
}

export function testOptions(groupId: string, over: Partial<ProcessorOptions> = {}): ProcessorOptions {
  return {
    groupId,
    batchMaxRows: 20_000,
    batchMaxMs: 500,
    lateMetadataWaitMs: 1_000,
    lateBufferMaxEvents: 100_000,
    metadataRetentionMs: 3_600_000,
    enrichedTopic: true,
    alerts: {
      oomKill: true,
      crashLoopExits: 3,
      crashLoopWindowMs: 60_000,
      tcpSpikeThreshold: 100,
      tcpSpikeWindowMs: 60_000,
      sequenceGap: true,
    },
    sessionTimeoutMs: 10_000,
    ...over,
  };
}
