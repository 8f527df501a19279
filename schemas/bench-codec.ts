// Encode/decode rate of a 1000-event EventBatch (a mix of every kind, like a busy node).
// Run: npx tsx schemas/bench-codec.ts [seconds per phase, default 3]
import { createEncoder, createSchemaResolver } from './codec.js';
import { sampleEventBatch, sampleEvents } from './samples.js';
import type { KtrailEvent } from './types.js';

export interface CodecBenchResult {
  eventsPerBatch: number;
  bytesPerBatch: number;
  encodeEventsPerSec: number;
  decodeEventsPerSec: number;
  /** Per second of this process's CPU time: stable on a shared, busy machine. */
  encodeEventsPerCpuSec: number;
  decodeEventsPerCpuSec: number;
}

export function benchCodec(secondsPerPhase = 3, eventsPerBatch = 1000): CodecBenchResult {
  const kinds = sampleEvents();
  const events: KtrailEvent[] = Array.from({ length: eventsPerBatch }, (_, i) => {
    const e = kinds[i % kinds.length] as KtrailEvent;
    return {
      ...e,
      tsNs: 1_000_000_000n + BigInt(i) * 1000n,
      cgroupId: 4000n + BigInt(i % 50),
      pid: 1000 + i,
    } as KtrailEvent;
  });
  const batch = { ...sampleEventBatch(), events };
  const encoder = createEncoder('EventBatch');
  const resolver = createSchemaResolver();
  const bytes = encoder.encode(batch);

  const rate = (fn: () => void): { wall: number; cpu: number } => {
    for (let i = 0; i < 20; i++) fn(); // warm up the JIT
    let batches = 0;
    const cpuStart = process.cpuUsage();
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(secondsPerPhase * 1e9);
    let now = start;
    while (now < deadline) {
      for (let i = 0; i < 10; i++) fn();
      batches += 10;
      now = process.hrtime.bigint();
    }
    const cpu = process.cpuUsage(cpuStart);
    const events = batches * eventsPerBatch;
    return {
      wall: Math.round(events / (Number(now - start) / 1e9)),
      cpu: Math.round(events / ((cpu.user + cpu.system) / 1e6)),
    };
  };

  const encode = rate(() => encoder.encode(batch));
  const decode = rate(() => resolver.decode(bytes));
  return {
    eventsPerBatch,
    bytesPerBatch: bytes.length,
    encodeEventsPerSec: encode.wall,
    decodeEventsPerSec: decode.wall,
    encodeEventsPerCpuSec: encode.cpu,
    decodeEventsPerCpuSec: decode.cpu,
  };
}

if (process.argv[1]?.endsWith('bench-codec.ts')) {
  const r = benchCodec(Number(process.argv[2] ?? 3));
  console.log(
    `EventBatch of ${r.eventsPerBatch} events, ${r.bytesPerBatch} bytes (${(r.bytesPerBatch / r.eventsPerBatch).toFixed(1)} B/event): ` +
      `encode ${r.encodeEventsPerSec.toLocaleString('en')} events/s (${r.encodeEventsPerCpuSec.toLocaleString('en')} per CPU-s), ` +
      `decode ${r.decodeEventsPerSec.toLocaleString('en')} events/s (${r.decodeEventsPerCpuSec.toLocaleString('en')} per CPU-s)`,
  );
}
