// Per (node, boot) memory of the EventBatch envelopes one events partition carried: what
// finds a message Kafka holds twice, and gaps in a collector's sequence. A collector's
// messages of one boot go to one partition in the order it made them, numbered by
// `sequence` and stamped `producedAtNs` when encoded. A resend under a new producer id
// (collector/src/kafka-sink.ts) puts the very same message at a later offset, and it repeats
// one request: at most its last 1,000 messages (pipeline/delivery.ts). So a message is a
// copy when one of the last HISTORY messages of its node and boot had the same sequence,
// producedAtNs and bytes (CRC-32C of the value) at an earlier offset. A collector that
// restarted its count in the same boot, or a second one under the same name, reuses
// sequences but not the time and the content.
// The partition's next owner gets, from the alert-state snapshot (alert-state.ts), the
// highest sequence and the last message committed per (node, boot): the copy of that one
// is still recognised after a rebalance, older ones are not.
import type { Row } from './partition-batch.js';

/** Messages remembered per (node, boot): more than one collector request holds (1,000). */
export const HISTORY = 1_024;
const SLOT_MASK = BigInt(HISTORY - 1);

/** One message's envelope as the partition saw it. */
export interface EnvelopeSeen {
  node: string;
  bootId: string;
  sequence: bigint;
  producedAtNs: bigint;
  /** CRC-32C of the message value. */
  checksum: number;
  offset: bigint;
}

/** A (node, boot) as committed, JSON-able (u64 as decimal text), in the alert-state snapshot. */
export interface SequenceSnapshotEntry {
  node: string;
  bootId: string;
  /** Highest sequence committed. */
  sequence: string;
  /** Producer time of the newest batch the processor had seen then (pruning). */
  seenAtNs: string;
  /** The last message committed (absent in snapshots from before copies were detected). */
  last?: { sequence: string; producedAtNs: string; checksum: number; offset: string };
}

export type SequenceVerdict =
  | { duplicate: true }
  /** `previous`: the highest sequence seen before this one (undefined: the first). */
  | { duplicate: false; previous: bigint | undefined };

interface Seen {
  maxSequence: bigint;
  maxOffset: bigint;
  /** Ring by sequence modulo HISTORY; -1 marks an empty slot. */
  sequences: BigInt64Array;
  producedAt: BigInt64Array;
  offsets: BigInt64Array;
  checksums: Uint32Array;
}

interface Committed {
  maxSequence: bigint;
  last: EnvelopeSeen | undefined;
  seenAtNs: bigint;
}

const SEP = '\u0000';

function emptySeen(): Seen {
  return {
    maxSequence: -1n,
    maxOffset: -1n,
    sequences: new BigInt64Array(HISTORY).fill(-1n),
    producedAt: new BigInt64Array(HISTORY),
    offsets: new BigInt64Array(HISTORY),
    checksums: new Uint32Array(HISTORY),
  };
}

function remember(s: Seen, e: EnvelopeSeen): void {
  const slot = Number(e.sequence & SLOT_MASK);
  s.sequences[slot] = e.sequence;
  s.producedAt[slot] = e.producedAtNs;
  s.offsets[slot] = e.offset;
  s.checksums[slot] = e.checksum;
  if (e.sequence > s.maxSequence) s.maxSequence = e.sequence;
  if (e.offset > s.maxOffset) s.maxOffset = e.offset;
}

/** The message at `offset` if the ring still holds it. */
function recall(s: Seen | undefined, node: string, bootId: string, sequence: bigint, offset: bigint) {
  if (s === undefined) return undefined;
  const slot = Number(sequence & SLOT_MASK);
  if (s.sequences[slot] !== sequence || s.offsets[slot] !== offset) return undefined;
  const producedAtNs = s.producedAt[slot] as bigint;
  return { node, bootId, sequence, producedAtNs, checksum: s.checksums[slot] as number, offset };
}

export class SequenceMarks {
  /** As consumed: runs ahead of what is committed. */
  private readonly live = new Map<string, Seen>();
  /** Through the last committed cut. */
  private readonly committed = new Map<string, Committed>();

  /** Judges one consumed envelope; remembers it unless it is a copy. */
  observe(e: EnvelopeSeen): SequenceVerdict {
    const key = `${e.node}${SEP}${e.bootId}`;
    let s = this.live.get(key);
    if (s === undefined) {
      s = emptySeen();
      this.live.set(key, s);
    }
    const slot = Number(e.sequence & SLOT_MASK);
    if (
      e.offset > s.maxOffset &&
      s.sequences[slot] === e.sequence &&
      s.producedAt[slot] === e.producedAtNs &&
      s.checksums[slot] === e.checksum
    )
      return { duplicate: true };
    const previous = s.maxSequence < 0n ? undefined : s.maxSequence;
    remember(s, e);
    return { duplicate: false, previous };
  }

  /** A committed cut's event_batches rows (rows.ts batchRow): what a snapshot may claim. */
  commit(envelopes: readonly Row[], seenAtNs: bigint): void {
    for (const row of envelopes) {
      const node = String(row.node);
      const bootId = String(row.boot_id);
      const key = `${node}${SEP}${bootId}`;
      const sequence = BigInt(row.sequence as string | number);
      const offset = BigInt((row.kafka_offset as string | number | undefined) ?? -1);
      let c = this.committed.get(key);
      if (c === undefined) {
        c = { maxSequence: sequence, last: undefined, seenAtNs };
        this.committed.set(key, c);
      }
      if (sequence > c.maxSequence) c.maxSequence = sequence;
      c.seenAtNs = seenAtNs;
      if (c.last !== undefined && offset <= c.last.offset) continue;
      c.last = recall(this.live.get(key), node, bootId, sequence, offset) ?? c.last;
    }
  }

  /** Forgets (node, boot) pairs not heard from since `oldestNs`; returns what is left. */
  snapshot(oldestNs: bigint): SequenceSnapshotEntry[] {
    const out: SequenceSnapshotEntry[] = [];
    for (const [key, c] of this.committed) {
      if (c.seenAtNs < oldestNs) {
        this.committed.delete(key);
        this.live.delete(key);
        continue;
      }
      const [node = '', bootId = ''] = key.split(SEP);
      const entry: SequenceSnapshotEntry = {
        node,
        bootId,
        sequence: String(c.maxSequence),
        seenAtNs: String(c.seenAtNs),
      };
      if (c.last !== undefined)
        entry.last = {
          sequence: String(c.last.sequence),
          producedAtNs: String(c.last.producedAtNs),
          checksum: c.last.checksum,
          offset: String(c.last.offset),
        };
      out.push(entry);
    }
    return out;
  }

  /** Takes over a snapshot (before any message of the partition); returns its newest seenAtNs. */
  restore(entries: readonly SequenceSnapshotEntry[]): bigint {
    let newest = 0n;
    for (const q of entries) {
      const key = `${q.node}${SEP}${q.bootId}`;
      const seenAtNs = BigInt(q.seenAtNs);
      const last: EnvelopeSeen | undefined =
        q.last === undefined
          ? undefined
          : {
              node: q.node,
              bootId: q.bootId,
              sequence: BigInt(q.last.sequence),
              producedAtNs: BigInt(q.last.producedAtNs),
              checksum: q.last.checksum,
              offset: BigInt(q.last.offset),
            };
      const maxSequence = BigInt(q.sequence);
      this.committed.set(key, { maxSequence, last, seenAtNs });
      const s = emptySeen();
      s.maxSequence = maxSequence;
      if (last !== undefined) remember(s, last);
      this.live.set(key, s);
      if (seenAtNs > newest) newest = seenAtNs;
    }
    return newest;
  }
}
