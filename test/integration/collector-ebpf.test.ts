// The collector with its real source: the eBPF programs through the native addon, on this
// kernel, into the real broker. A process this test starts must show up in Kafka as
// proc_exec (with its file name and arguments) and proc_exit, the map samplers must emit
// CPU samples, and the counters must balance.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, onTestFinished } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { buildCollector } from '../../collector/src/build.js';
import { missingKernelCapture } from '../../collector/src/kernel/addon.js';
import { bpfObjects } from '../../collector/src/sources.js';
import { validateConfig } from '../../common/config.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { CollectorStats, EventBatch, KtrailEvent } from '../../schemas/types.js';
import { enableBpfStats } from '../support/bpf-stats.js';
import { deleteTopics } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));

function missingBpfObjects(): string | undefined {
  try {
    bpfObjects('bpf/.output');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const missing = kafka.missing ?? missingKernelCapture() ?? missingBpfObjects();

describe('collector with the eBPF source', () => {
  itReal(missing)(
    'a process started here reaches Kafka as proc_exec/proc_exit, with CPU samples; counters balance',
    async () => {
      const brokers = kafka.value?.brokers as string[];
      const marker = `ktrail-${Date.now().toString(36)}`;
      const config = validateConfig({
        node: 'node-ebpf-it',
        http: { port: 0 },
        kafka: { brokers, topicPrefix: `ebpf-${Date.now().toString(36)}.`, partitions: 1 },
        collector: {
          source: 'ebpf',
          bpfObjectDir: 'bpf/.output',
          sampleIntervalMs: 1_000,
          statsIntervalMs: 60_000,
          batchMaxMs: 100,
        },
      });
      // Sequence state of this test only: it starts at 0 and must continue across a restart.
      const stateDir = mkdtempSync(join(tmpdir(), 'ktrail-ebpf-state-'));
      process.env.KTRAIL_STATE_DIR = stateDir;
      onTestFinished(() => {
        delete process.env.KTRAIL_STATE_DIR;
        rmSync(stateDir, { recursive: true, force: true });
      });
      // The programs' kernel time shows in the stats records while the kernel counts it.
      const bpfStats = await enableBpfStats();
      onTestFinished(() => bpfStats.release());
      // Containers off: this test is about the kernel path (Docker may not run here).
      const built = await buildCollector({ config, containers: false });
      await built.start();
      // A distinctive process: /bin/sh -c 'exit 3' with a marker argument.
      for (let i = 0; i < 3; i++) spawnSync('/bin/sh', ['-c', 'exit 3', marker]);
      // CPU work for the samplers to see (this process' cgroup).
      const until = Date.now() + 1_500;
      while (Date.now() < until) Math.sqrt(Math.random());
      await new Promise((r) => setTimeout(r, 2_500));
      const final = await built.stop();
      onTestFinished(() => deleteTopics({ brokers }, Object.values(built.topics)));

      expect(final.unaccounted).toBe(0);
      expect(final.pending).toBe(0);
      expect(final.captured).toBeGreaterThan(0);
      expect(final.delivered + final.droppedTotal).toBe(final.captured);

      const resolver = createSchemaResolver();
      const events: KtrailEvent[] = (await readTopic(brokers, built.topics.events)).flatMap(
        (m) => (resolver.decodeAs('EventBatch', m.value) as EventBatch).events,
      );
      expect(events.length).toBe(final.delivered);
      const execs = events.filter(
        (e): e is Extract<KtrailEvent, { kind: 'proc_exec' }> =>
          e.kind === 'proc_exec' && e.args.includes(marker),
      );
      expect(execs.length).toBe(3);
      expect(execs[0]?.filename).toBe('/bin/sh');
      const pids = new Set(execs.map((e) => e.tgid));
      const exits = events.filter(
        (e): e is Extract<KtrailEvent, { kind: 'proc_exit' }> => e.kind === 'proc_exit' && pids.has(e.tgid),
      );
      expect(exits.length).toBe(3);
      expect(exits.every((e) => e.exitCode === 3)).toBe(true);
      expect(events.some((e) => e.kind === 'cpu_sample' && e.cpuNs > 0n)).toBe(true);

      // Its own cost, in the stats records: process CPU, RSS, and the kernel time of the
      // programs that ran (sched_switch runs constantly; the execs above ran kt_proc_exec).
      const stats = (await readTopic(brokers, built.topics.stats)).map(
        (m) => resolver.decodeAs('CollectorStats', m.value) as CollectorStats,
      );
      const sum = (f: (s: CollectorStats) => bigint) => stats.reduce((a, s) => a + f(s), 0n);
      expect(sum((s) => s.cpuNs)).toBeGreaterThan(0n);
      expect(stats.at(-1)?.rssBytes).toBeGreaterThan(20n * 2n ** 20n);
      const ran = (p: string) => sum((s) => s.programRunCount[p] ?? 0n);
      const took = (p: string) => sum((s) => s.programRunTimeNs[p] ?? 0n);
      const all = (f: (s: CollectorStats) => Record<string, bigint>) =>
        stats.reduce((a, s) => a + Object.values(f(s)).reduce((x, y) => x + y, 0n), 0n);
      expect(all((s) => s.programRunTimeNs)).toBeGreaterThan(0n);
      expect(ran('kt_proc_exec')).toBeGreaterThanOrEqual(3n);
      expect(took('kt_proc_exec')).toBeGreaterThan(0n);

      // A restarted collector in the same boot continues the sequence: no duplicates, no gap.
      const again = await buildCollector({ config, containers: false });
      await again.start();
      spawnSync('/bin/sh', ['-c', 'exit 0', `${marker}-again`]);
      await new Promise((r) => setTimeout(r, 1_500));
      const second = await again.stop();
      expect(second.unaccounted).toBe(0);
      const sequences = (await readTopic(brokers, built.topics.events)).map(
        (m) => (resolver.decodeAs('EventBatch', m.value) as EventBatch).sequence,
      );
      expect(sequences).toEqual(sequences.map((_, i) => BigInt(i)));
      expect(sequences.length).toBe(final.deliveredMessages + second.deliveredMessages);
    },
    120_000,
  );
});
