// The direct EventBatch reader against avsc's path (decode, checkMessage, EventColumns.add):
// whatever it reads must be exactly what that path makes, and whatever it can't read must
// leave the batch as it was. Inputs: valid messages with values across every field's range,
// mutations of them, messages with values past their types' range, and arrays written in
// blocks other writers use (several blocks, negative counts with sizes).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { EventBatchReader } from '../../processor/src/event-batch-reader.js';
import { EventColumns } from '../../processor/src/event-columns.js';
import { PartitionBatch } from '../../processor/src/partition-batch.js';
import {
  checkMessage,
  type DecodedEvent,
  messageSource,
  tableForKind,
  wallClockNs,
} from '../../processor/src/rows.js';
import { createEncoder } from '../../schemas/codec.js';
import { sampleEventBatch, sampleEvents } from '../../schemas/samples.js';
import type { EventBatch } from '../../schemas/types.js';
import { ONE_MESSAGE } from '../support/event-row.js';
import { looseEventBatchWriter } from '../support/loose-avro.js';

const codec = createProcessorCodec();
const encoder = createEncoder('EventBatch');
const reader = EventBatchReader.forCurrentSchema();

/** Every event row of a batch as plain values: fields, time, place, source, join. */
function snapshot(batch: PartitionBatch): unknown {
  const out: Record<string, unknown> = { rows: batch.rows };
  for (const [table, rows] of batch.tables) {
    if (!(rows instanceof EventColumns)) continue;
    out[table] = rows.views().map((v) => ({
      ...(v as unknown as { toJSON(): object }).toJSON(),
      index: v.index,
      bytes: v.bytes === undefined ? undefined : v.bytes.body.subarray(...spanOf(v.bytes.spans, v.index)),
    }));
  }
  return out;
}

const spanOf = (spans: number[], i: number): [number, number] => [
  spans[2 * i] as number,
  spans[2 * i + 1] as number,
];

/** avsc's path, as partition-pipeline.ts add takes it when the reader can't; throws as it refuses. */
function viaAvsc(batch: PartitionBatch, bytes: Buffer, offset: string, keep: boolean): void {
  const decoded = codec.decodeEventBatch(bytes, keep);
  checkMessage(decoded);
  const src = messageSource(decoded, 3, offset, keep);
  decoded.events.forEach((ev: DecodedEvent, i) => {
    batch.addEvent(tableForKind(ev.kind), src, ev, wallClockNs(decoded, ev.tsNs), i);
  });
}

function viaReader(batch: PartitionBatch, bytes: Buffer, offset: string, keep: boolean) {
  const body = codec.eventBatchBody?.(bytes, keep);
  if (body === undefined || reader === undefined) return undefined;
  return reader.read(bytes, body, batch, 3, offset, keep);
}

/** A batch already holding one message, so a refused read must leave those rows alone. */
function primed(keep: boolean): PartitionBatch {
  const batch = new PartitionBatch(ONE_MESSAGE);
  viaAvsc(batch, encoder.encode(validBatch(2)), '1', keep);
  return batch;
}

function validBatch(seed: number): EventBatch {
  const events = sampleEvents().map((ev, i) => ({ ...ev, tsNs: BigInt(seed * 1000 + i) }));
  return { ...sampleEventBatch(), sequence: BigInt(seed), events };
}

/** The same input both ways: equal when the reader takes it; untouched batch when it does not. */
function compare(bytes: Buffer, keep: boolean): 'read' | 'refused' {
  const direct = primed(keep);
  const before = snapshot(direct);
  const read = viaReader(direct, bytes, '9', keep);
  if (read === undefined) {
    expect(snapshot(direct)).toEqual(before);
    return 'refused';
  }
  const expected = primed(keep);
  viaAvsc(expected, bytes, '9', keep);
  expect(snapshot(direct)).toEqual(snapshot(expected));
  return 'read';
}

/** An Avro long (zigzag varint). */
function varint(v: number): Buffer {
  let zz = v < 0 ? -2 * v - 1 : 2 * v;
  const out: number[] = [];
  while (zz >= 0x80) {
    out.push((zz % 0x80) | 0x80);
    zz = Math.floor(zz / 0x80);
  }
  out.push(zz);
  return Buffer.from(out);
}

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const edgeU64 = fc.constantFrom(0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n);

/** A valid EventBatch: every kind, its u64 fields anywhere in range, times a row can hold. */
const validArb = fc
  .tuple(
    fc.array(fc.oneof(u64, edgeU64), { minLength: 64, maxLength: 64 }),
    fc.array(fc.nat(0xffff_ffff), { minLength: 32, maxLength: 32 }),
    fc.string({ unit: 'grapheme', maxLength: 12 }),
    fc.option(fc.bigInt({ min: 0n, max: 2n ** 62n })),
    fc.array(fc.oneof(u64, edgeU64), { maxLength: 5 }),
  )
  .map(([bigs, nums, text, epoch, hist]) => {
    let b = 0;
    let n = 0;
    const events = sampleEvents().map((ev) => {
      const out: Record<string, unknown> = { ...ev };
      for (const [k, v] of Object.entries(ev)) {
        if (k === 'tsNs') out[k] = (bigs[b++ % bigs.length] as bigint) % 2n ** 61n;
        else if (typeof v === 'bigint') out[k] = bigs[b++ % bigs.length];
        else if (typeof v === 'number' && k !== 'flags' && k !== 'family' && !k.endsWith('port'))
          out[k] = nums[n++ % nums.length];
        else if (typeof v === 'string' && k !== 'kind') out[k] = text;
        else if (Array.isArray(v)) out[k] = typeof v[0] === 'bigint' ? hist : [text, '', text];
      }
      return out;
    });
    return encoder.encode({
      ...sampleEventBatch(),
      node: text,
      bootEpochNs: epoch,
      events,
    } as unknown as EventBatch);
  });

describe('EventBatchReader', () => {
  it('exists for the current EventBatch schema', () => {
    expect(reader).toBeDefined();
  });

  it('reads every valid message exactly as avsc’s path builds its rows', () => {
    for (const keep of [false, true])
      fc.assert(
        fc.property(validArb, (bytes) => {
          expect(compare(bytes, keep)).toBe('read');
        }),
        { numRuns: 300, seed: 17 },
      );
  });

  it('takes nothing from a message it can’t read exactly, and avsc decides it', () => {
    const good = encoder.encode(validBatch(5));
    const loose = looseEventBatchWriter();
    const mutated = fc
      .tuple(fc.nat(good.length - 1), fc.nat(255), fc.constantFrom('set', 'cut', 'insert'))
      .map(([at, value, op]) =>
        op === 'set'
          ? Buffer.concat([good.subarray(0, at), Buffer.from([value]), good.subarray(at + 1)])
          : op === 'cut'
            ? good.subarray(0, at)
            : Buffer.concat([good.subarray(0, at), Buffer.from([value]), good.subarray(at)]),
      );
    const outOfRange = fc
      .tuple(
        fc.nat(sampleEvents().length - 1),
        fc.nat(),
        fc.constantFrom(-1, 2 ** 31, 2 ** 32, 2 ** 40, -(2 ** 31) - 1),
      )
      .map(([which, field, value]) => {
        const ev = { ...(validBatch(6).events[which] as unknown as Record<string, unknown>) };
        const keys = Object.keys(ev).filter((k) => typeof ev[k] === 'number');
        ev[keys[field % keys.length] as string] = value;
        return loose({ ...validBatch(6), events: [ev] } as unknown as Record<string, unknown>);
      });
    const outcomes = new Set<string>();
    fc.assert(
      fc.property(fc.oneof(mutated, outOfRange), (bytes) => {
        outcomes.add(compare(bytes, true));
      }),
      { numRuns: 800, seed: 23 },
    );
    expect([...outcomes].sort()).toEqual(['read', 'refused']);
    // A time past 2262 (the sample's tsNs of 2^64 - 1 after its boot epoch) is avsc's to refuse.
    expect(compare(encoder.encode(sampleEventBatch()), false)).toBe('refused');
    expect(() =>
      viaAvsc(new PartitionBatch(ONE_MESSAGE), encoder.encode(sampleEventBatch()), '1', false),
    ).toThrow(/2262/);
    expect(compare(Buffer.concat([good, Buffer.from([0])]), false)).toBe('refused'); // trailing byte
    // A ten-byte varint whose last byte sets bits past the 64th: avsc keeps one of them.
    const wide = validBatch(9);
    wide.events = [{ ...(wide.events[0] as object), cgroupId: 2n ** 62n } as never];
    const bytes = encoder.encode(wide);
    const tenBytes = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    const at = bytes.indexOf(tenBytes);
    expect(at).toBeGreaterThan(0);
    expect(compare(bytes, false)).toBe('read');
    bytes[at + 9] = 0x03;
    expect(compare(bytes, false)).toBe('refused');
  });

  it('reads arrays written in several blocks and with negative counts', () => {
    const batch = validBatch(7);
    const bytes = encoder.encode(batch);
    const probe = viaReader(new PartitionBatch(ONE_MESSAGE), bytes, '1', true);
    const spans = probe?.src.bytes?.spans ?? [];
    const body = bytes.length - (probe?.src.bytes?.body.length ?? 0);
    const first = body + (spans[0] as number);
    const n = batch.events.length;
    expect(bytes[first - 1]).toBe(2 * n); // the one block's count, one varint byte
    const events = bytes.subarray(first, bytes.length - 1);
    const second = body + (spans[2] as number);
    const head = bytes.subarray(0, first - 1);
    const sized = (count: number, items: Buffer) =>
      Buffer.concat([varint(-count), varint(items.length), items]);
    const zz = varint;
    const twoBlocks = Buffer.concat([
      head,
      zz(1),
      bytes.subarray(first, second),
      zz(n - 1),
      bytes.subarray(second),
    ]);
    const negative = Buffer.concat([head, sized(n, events), Buffer.from([0])]);
    expect(compare(twoBlocks, true)).toBe('read');
    expect(compare(negative, true)).toBe('read');
  });

  it('gives a read message back on rollback (a copy of one already seen)', () => {
    const batch = primed(false);
    const before = snapshot(batch);
    const read = viaReader(batch, encoder.encode(validBatch(8)), '9', false);
    expect(read?.events).toBe(sampleEvents().length);
    expect(snapshot(batch)).not.toEqual(before);
    read?.rollback();
    expect(snapshot(batch)).toEqual(before);
  });
});
