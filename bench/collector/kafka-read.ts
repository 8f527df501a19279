// Reads a whole topic back from the real broker, up to the high watermark of every
// partition at call time: what the collector integration tests use to check what
// actually reached Kafka.
import { type Admin, Kafka, logLevel } from 'kafkajs';
import '../../common/kafka.js'; // registers the zstd codec the collector writes

export interface ReadMessage {
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer;
}

/**
 * The topic's offsets. A broker just restarted or thawed may answer "not the leader" until
 * its leadership is settled again: retried (with fresh metadata) until the deadline.
 */
async function topicOffsets(admin: Admin, topic: string, deadline: number) {
  for (;;) {
    try {
      return await admin.fetchTopicOffsets(topic);
    } catch (err) {
      if (!(err as { retriable?: boolean }).retriable || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
      await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    }
  }
}

export async function readTopic(
  brokers: string[],
  topic: string,
  timeoutMs = 60_000,
): Promise<ReadMessage[]> {
  const kafka = new Kafka({ brokers, clientId: 'ktrail-collector-test-reader', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await topicOffsets(admin, topic, Date.now() + timeoutMs).finally(() => admin.disconnect());
  const remaining = new Map<number, bigint>();
  for (const o of offsets) {
    const high = BigInt(o.high);
    if (high > BigInt(o.low)) remaining.set(o.partition, high);
  }
  const out: ReadMessage[] = [];
  if (remaining.size === 0) return out;

  const consumer = kafka.consumer({ groupId: `reader-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `reading ${topic}: ${out.length} messages after ${timeoutMs} ms, partitions left ${[...remaining.keys()]}`,
          ),
        ),
      timeoutMs,
    );
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          out.push({
            partition,
            offset: message.offset,
            key: message.key ? message.key.toString() : null,
            value: message.value ?? Buffer.alloc(0),
          });
          const high = remaining.get(partition);
          if (high !== undefined && BigInt(message.offset) + 1n >= high) remaining.delete(partition);
          if (remaining.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  return out;
}
