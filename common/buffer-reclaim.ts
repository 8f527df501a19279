// Frees the Buffers kafkajs drops after each produce request while they are still young.
//
// kafkajs encodes a produce request through fresh Buffers, about ten bytes per payload byte
// (record, records, batch and request encoders, each grown by power-of-two copies). They die
// with the request, but the collector allocates few JavaScript objects per event, so the
// young generation rarely fills and V8 frees them only when its external-memory limit (about
// 64 MiB above what the last full GC left) starts a mark-compact: that garbage, not live
// data, set the collector's RSS at full speed. A scavenge once external memory has grown by
// `thresholdBytes` frees them (they are young and unreachable) for a fraction of a
// millisecond, and the next request reuses warm memory instead of faulting in fresh pages.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * External growth between scavenges. At full speed (~2M events/s, ~100 scavenges/s) 4 MiB
 * also kept V8 from starting its own external-pressure mark-compacts (docs/perf-log.md).
 */
export const RECLAIM_THRESHOLD_BYTES = 4 * 2 ** 20;

export interface BufferReclaimer {
  /** Call after each produce request settled; scavenges when external memory grew enough. */
  check(): void;
  /** Scavenges run so far. */
  readonly scavenges: number;
}

type GcFunction = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let gcFunction: GcFunction | undefined;

/**
 * V8's `gc` is only exposed to contexts created after `--expose-gc` is set; a context of its
 * own keeps it off the collector's global object.
 */
function exposedGc(): GcFunction {
  if (gcFunction === undefined) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as GcFunction;
  }
  return gcFunction;
}

export function createBufferReclaimer(thresholdBytes = RECLAIM_THRESHOLD_BYTES): BufferReclaimer {
  if (!(thresholdBytes > 0)) throw new RangeError(`thresholdBytes must be > 0, got ${thresholdBytes}`);
  const gc = exposedGc();
  let base = getHeapStatistics().external_memory;
  let scavenges = 0;
  return {
    check() {
      const external = getHeapStatistics().external_memory;
      // A full GC (or freed Buffers) lowered it: measure growth from there.
      if (external < base) base = external;
      else if (external - base >= thresholdBytes) {
        gc({ type: 'minor' });
        scavenges++;
        base = getHeapStatistics().external_memory;
      }
    },
    get scavenges() {
      return scavenges;
    },
  };
}
