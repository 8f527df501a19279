// Event sources for the collector: the kernel (native addon) and, through kernel/replay-source,
// capture files. Both hand over raw ring-buffer record batches; decoding happens after.
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../../common/errors.js';
import type { EventSource } from './collector.js';
import { type CaptureSettings, type KernelCapture, openCapture } from './kernel/addon.js';
import { PROG_SLOT_NAME } from './kernel/layout.js';
import type { ProgramCost } from './stats.js';

export interface KernelSourceOptions {
  bpfObjectDir: string;
  ringBufferBytes: number;
  programs?: string[] | undefined;
  /** cgroup v2 mount the cgroup_skb programs attach to (collector.cgroupRoot; default: found). */
  cgroupRoot?: string | undefined;
}

export interface KernelSource extends EventSource {
  /** The open capture (after start), for the map samplers. */
  readonly capture: KernelCapture | undefined;
}

/** Every compiled CO-RE object in the directory (bpf/.output/*.bpf.o). */
export function bpfObjects(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new ConfigError(`collector.bpfObjectDir: cannot read ${dir} (run npm run build:bpf)`, {
      cause: err,
    });
  }
  const objects = names.filter((n) => n.endsWith('.bpf.o')).map((n) => resolve(join(dir, n)));
  if (objects.length === 0)
    throw new ConfigError(`collector.bpfObjectDir: no *.bpf.o in ${dir} (run npm run build:bpf)`);
  return objects;
}

export function createKernelSource(options: KernelSourceOptions): KernelSource {
  let capture: KernelCapture | undefined;
  return {
    get capture() {
      return capture;
    },
    start(onBatch) {
      const settings: CaptureSettings = {
        objects: bpfObjects(options.bpfObjectDir),
        ringBufferBytes: options.ringBufferBytes,
        // Addon -> JS batch bounds; Kafka batching happens later. Each batch wakes the JS
        // thread (~80 us of CPU however small it is): at 10k events/s 100 ms makes ten
        // batches of ~1,000 records a second, at up to 100 ms of added latency
        // (docs/collector.md, Benchmark).
        batchMaxBytes: 256 * 1024,
        batchMaxMs: 100,
      };
      if (options.programs !== undefined) settings.programs = options.programs;
      if (options.cgroupRoot !== undefined) settings.cgroupRoot = options.cgroupRoot;
      capture = openCapture(settings, onBatch);
    },
    stop() {
      capture?.close();
    },
    drops() {
      if (!capture) return {};
      const c = capture.counters();
      const kernelDrops: Record<string, number> = {};
      c.kernelDrops.forEach((n, slot) => {
        if (n > 0) kernelDrops[PROG_SLOT_NAME[slot] ?? `slot_${slot}`] = n;
      });
      // Records lost between the addon's thread and JS, plus records the addon found malformed
      // before they reached the decoder: both are losses the kernel did not count.
      return { kernelDrops, addonDrops: c.lostRecords + c.malformedRecords };
    },
    programCost() {
      const cost: Record<string, ProgramCost> = {};
      if (!capture) return cost;
      for (const p of capture.counters().programs) {
        // Zero until kernel.bpf_stats_enabled=1; programs of the same name add up.
        if (!p.runCount) continue;
        const c = cost[p.name] ?? { runTimeNs: 0, runCount: 0 };
        c.runTimeNs += p.runTimeNs ?? 0;
        c.runCount += p.runCount;
        cost[p.name] = c;
      }
      return cost;
    },
  };
}
