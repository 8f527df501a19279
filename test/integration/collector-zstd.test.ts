// zstd record batches and the native CRC-32C against the real broker (the collector's
// producer settings, common/kafka.ts codecs):
//  - batches kafkajs writes with ktrail's zstd codec and CRC are accepted (the broker checks
//    the CRC and decompresses compressed batches to validate them) and read back intact;
//  - batches the broker itself compresses with Java's zstd (topic compression.type=zstd)
//    are read by ktrail's decompressor: the interop direction other producers take.
import { randomBytes } from 'node:crypto';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { afterAll, describe, expect, inject } from 'vitest';
import { createKafka, useNativeCrc32c } from '../../common/kafka.js';
import { createLogger } from '../../common/log.js';
import { createTopics, deleteTopics, uniqueTopic } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const topics: string[] = [];
afterAll(async () => {
  if (kafka.value) await deleteTopics(kafka.value, topics);
});

/** Counts calls through the registered zstd codec while a test runs. */
function countZstd(): { compress: number; decompress: number } {
  const counts = { compress: 0, decompress: 0 };
  const inner = kafkajs.CompressionCodecs[CompressionTypes.ZSTD]();
  kafkajs.CompressionCodecs[CompressionTypes.ZSTD] = () => ({
    compress: (encoder: { buffer: Buffer }) => {
      counts.compress++;
      return inner.compress(encoder);
    },
    decompress: (buffer: Buffer) => {
      counts.decompress++;
      return inner.decompress(buffer);
    },
  });
  return counts;
}

async function produceAndRead(
  brokers: string[],
  topic: string,
  compression: CompressionTypes,
  values: Buffer[],
): Promise<Buffer[]> {
  const client = createKafka({ brokers, clientId: 'ktrail-zstd-test' }, createLogger('test.zstd'));
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.sendBatch({
    acks: -1,
    compression,
    topicMessages: [{ topic, messages: values.map((value, i) => ({ key: `k${i}`, value })) }],
  });
  await producer.disconnect();

  const consumer = client.consumer({ groupId: uniqueTopic('zstd-reader') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${got.length} of ${values.length}`)), 60_000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          got.push(message.value ?? Buffer.alloc(0));
          if (got.length === values.length) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return got;
}

describe('zstd batches through the real broker', () => {
  itReal(kafka.missing)(
    'ktrail-compressed batches with the native CRC are accepted and read back',
    async () => {
      const brokers = kafka.value?.brokers as string[];
      const topic = uniqueTopic('zstd-ktrail');
      topics.push(topic);
      await createTopics({ brokers }, [{ topic }]);
      useNativeCrc32c(); // what the collector's sink does; a wrong CRC is CORRUPT_MESSAGE
      const counts = countZstd();
      const text = Buffer.from('tcp_close 10.0.0.1:443 nginx '.repeat(2_000));
      const values = [text, randomBytes(50_000), Buffer.from('small'), text.subarray(7)];
      const got = await produceAndRead(brokers, topic, CompressionTypes.ZSTD, values);
      expect(got.map((v) => v.toString('base64'))).toEqual(values.map((v) => v.toString('base64')));
      expect(counts.compress).toBeGreaterThan(0);
      expect(counts.decompress).toBeGreaterThan(0);
    },
  );

  itReal(kafka.missing)('batches the broker compressed with Java zstd are read by ktrail', async () => {
    const brokers = kafka.value?.brokers as string[];
    const topic = uniqueTopic('zstd-broker');
    topics.push(topic);
    await createTopics({ brokers }, [
      { topic, configEntries: [{ name: 'compression.type', value: 'zstd' }] },
    ]);
    const counts = countZstd();
    const values = Array.from({ length: 50 }, (_, i) => Buffer.from(`event ${i} `.repeat(1_000 + i)));
    // Sent uncompressed: the broker recompresses to the topic's zstd before storing.
    const got = await produceAndRead(brokers, topic, CompressionTypes.None, values);
    expect(got.map((v) => v.toString())).toEqual(values.map((v) => v.toString()));
    expect(counts.compress).toBe(0);
    expect(counts.decompress).toBeGreaterThan(0);
  });
}, 120_000);
