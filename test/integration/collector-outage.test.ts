// Kafka down for 30 s in the middle of a stream, on a broker of this test's own (separate
// port and data dir, started and stopped with deploy/local/kafka.sh), so other tests keep
// the shared broker. Two collectors replay at a steady rate through the outage:
//  - "roomy" has a buffer that holds the whole outage: it must lose nothing;
//  - "tight" has a tiny buffer: it must keep running, drop oldest messages past the bound,
//    and count every dropped event.
// Afterwards both topics are read back: for each collector, events in Kafka = delivered,
// and captured = delivered + dropped(by reason) + pending, exactly.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { type BuiltCollector, buildCollector } from '../../collector/src/build.js';
import { validateConfig } from '../../common/config.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { type PrivateBroker, privateBroker, sharedKafkaLibs } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { waitFor } from '../support/wait.js';

// The shared broker being up means the jars are installed; this test needs only those.
const kafka = endpointOrReason(inject('kafka'));
const missing =
  kafka.missing ?? (existsSync(sharedKafkaLibs) ? undefined : `no Kafka jars in ${sharedKafkaLibs}`);

const work = mkdtempSync(join(tmpdir(), 'ktrail-collector-outage-'));
let own: PrivateBroker | undefined;

afterAll(async () => {
  await own?.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

describe('collector through a Kafka outage', () => {
  itReal(missing)(
    'survives a 30 s broker stop and a 10 s freeze, resumes, and accounts for every event',
    async () => {
      // A private broker: own port, own data dir, the shared jars.
      own = await privateBroker(work);
      await own.start();
      const { brokers } = own;

      const file = join(work, 'stream.ktcap');
      await writeSyntheticCapture(file, { records: 4_000, perBatch: 100, malformedEvery: 400 });
      const topicPrefix = `outage-${Date.now().toString(36)}.`;
      const make = (node: string, bufferMaxMessages: number): Promise<BuiltCollector> =>
        buildCollector({
          config: validateConfig({
            node,
            http: { port: 0 },
            kafka: { brokers, topicPrefix, partitions: 2, requestTimeoutMs: 3_000 },
            collector: {
              source: 'replay',
              replayFile: file,
              batchMaxEvents: 200,
              batchMaxMs: 100,
              bufferMaxMessages,
              statsIntervalMs: 5_000,
              shutdownDeadlineMs: 15_000,
            },
          }),
          replay: { rate: 1_500, loop: true },
        });
      const roomy = await make('node-roomy', 100_000);
      const tight = await make('node-tight', 10); // ~2,000 events: about 1.3 s of stream
      await roomy.start();
      await tight.start();
      const both = [roomy, tight];
      await waitFor(
        'first deliveries',
        () => both.every((c) => c.collector.counters.delivered > 0) || undefined,
        60_000,
      );

      await own.stop();
      const deliveredAtStop = both.map((c) => c.collector.counters.delivered);
      await new Promise((r) => setTimeout(r, 30_000));

      // Mid-outage: still capturing, nothing delivered, the bound holds, drops counted.
      const mid = both.map((c) => c.collector.snapshot());
      for (const [i, s] of mid.entries()) {
        expect(s.unaccounted).toBe(0);
        expect(s.captured).toBeGreaterThan((deliveredAtStop[i] as number) + 20_000);
        expect(s.kafkaErrors).toBeGreaterThan(0);
      }
      // roomy holds everything since the stop; tight drops oldest, so what it holds is fresh.
      expect(mid[0]?.oldestUnsentAgeMs).toBeGreaterThan(20_000);
      expect(mid[1]?.oldestUnsentAgeMs).toBeLessThan(10_000);
      // The bound holds: at most 10 messages of <= 200 events, plus the open batch.
      expect(mid[1]?.pending).toBeLessThanOrEqual(10 * 200 + 200);
      expect(mid[1]?.dropped.buffer_full).toBeGreaterThan(10_000);
      expect(mid[0]?.dropped.buffer_full).toBe(0);
      expect(mid[0]?.pending).toBeGreaterThan(20_000);
      expect(roomy.collector.ready()).toBe(false);

      await own.start();
      // The roomy collector catches up: its backlog drains to the live trickle.
      await waitFor(
        'catch-up after restart',
        () => roomy.collector.snapshot().pending < 2_000 || undefined,
        120_000,
      );

      // A frozen broker (SIGSTOP): sends hang instead of failing, and every request that
      // goes unanswered for requestTimeoutMs is a Kafka error in the metrics.
      const errorsBefore = roomy.collector.snapshot().kafkaErrors;
      const pid = own.pid();
      process.kill(pid, 'SIGSTOP');
      try {
        await new Promise((r) => setTimeout(r, 10_000));
        expect(roomy.collector.snapshot().kafkaErrors).toBeGreaterThan(errorsBefore);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await waitFor(
        'catch-up after the freeze',
        () => roomy.collector.snapshot().pending < 2_000 || undefined,
        120_000,
      );
      // The tight collector sends again too: waited for, not timed (its reconnect backoff after
      // the freeze can pass a few seconds on a loaded machine).
      const resumed = tight.collector.counters.delivered;
      await waitFor(
        'the tight collector sending again',
        () => tight.collector.counters.delivered > resumed || undefined,
        60_000,
      );
      expect(tight.collector.counters.delivered).toBeGreaterThan(resumed);

      const finals = [await roomy.stop(), await tight.stop()];
      for (const f of finals) {
        expect(f.unaccounted).toBe(0);
        expect(f.pending).toBe(0);
        expect(f.delivered + f.droppedTotal).toBe(f.captured);
      }
      expect(finals[0]?.droppedTotal).toBe(finals[0]?.dropped.malformed_record);
      expect(finals[1]?.dropped.buffer_full).toBeGreaterThan(10_000);

      // What Kafka holds, per node, deduplicated by sequence (a lost ack may repeat a batch).
      const resolver = createSchemaResolver();
      const batches = (await readTopic(brokers, roomy.topics.events, 120_000)).map(
        (m) => resolver.decodeAs('EventBatch', m.value) as EventBatch,
      );
      for (const [i, node] of ['node-roomy', 'node-tight'].entries()) {
        const bySeq = new Map<bigint, number>();
        for (const b of batches) if (b.node === node) bySeq.set(b.sequence, b.events.length);
        const inKafka = [...bySeq.values()].reduce((a, n) => a + n, 0);
        const final = finals[i] as (typeof finals)[number];
        // A send that failed mid-request may have been written: such messages, if later
        // dropped, are counted as dropped AND as unconfirmed. Everything else is exact.
        expect(inKafka).toBeGreaterThanOrEqual(final.delivered);
        expect(inKafka).toBeLessThanOrEqual(final.delivered + final.droppedUnconfirmed);
        const maxSeq = [...bySeq.keys()].reduce((a, s) => (s > a ? s : a), -1n);
        const gaps = Number(maxSeq) + 1 - bySeq.size;
        if (node === 'node-roomy') expect(gaps).toBe(0);
        else expect(gaps).toBeGreaterThan(0); // dropped messages show as sequence gaps downstream
      }
    },
    420_000,
  );
});
