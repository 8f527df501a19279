// Telling a message Kafka holds twice from a new one, by its envelope (sequence-marks.ts).
import { describe, expect, it } from 'vitest';
import { type Alert, AlertEngine } from '../../processor/src/alerts.js';
import { type EnvelopeSeen, HISTORY, SequenceMarks } from '../../processor/src/sequence-marks.js';

const MS = 1_000_000n;
const T0 = BigInt(Date.now()) * MS;

/** Message `sequence` of node n1, boot b1, encoded at T0 + sequence ms, at Kafka offset `offset`. */
const msg = (sequence: bigint, offset: bigint, producedAtNs = T0 + sequence * MS): EnvelopeSeen => ({
  node: 'n1',
  bootId: 'b1',
  sequence,
  producedAtNs,
  checksum: 10,
  offset,
});

const duplicates = (marks: SequenceMarks, seen: EnvelopeSeen[]) =>
  seen.filter((e) => marks.observe(e).duplicate).map((e) => e.offset);

describe('sequence marks', () => {
  it('flags a resent request (same envelopes at later offsets), nothing else', () => {
    const marks = new SequenceMarks();
    // 1..3 sent, the answer lost, the request resent under a new producer id: 2 and 3 again.
    const seen = [msg(1n, 10n), msg(2n, 11n), msg(3n, 12n), msg(2n, 13n), msg(3n, 14n), msg(4n, 15n)];
    expect(duplicates(marks, seen)).toEqual([13n, 14n]);
  });

  it('keeps a collector that reuses sequences (restarted count, a second one of the same name)', () => {
    const marks = new SequenceMarks();
    const later = T0 + 60_000n * MS;
    const seen = [
      msg(1n, 0n),
      msg(2n, 1n),
      msg(3n, 2n),
      msg(1n, 3n, later), // counting from 1 again (its sequence file was not writable), later
      msg(2n, 4n, later + MS),
      msg(2n, 5n, later + MS), // a copy of the restarted collector's message
      msg(3n, 6n), // a late copy of the first collector's 3 (its slot still holds it)
      { ...msg(3n, 7n), checksum: 11 }, // same sequence and time, other bytes: not a copy
    ];
    expect(duplicates(marks, seen)).toEqual([5n, 6n]);
  });

  it('remembers one request of messages back, not more', () => {
    const marks = new SequenceMarks();
    const n = BigInt(HISTORY);
    for (let i = 0n; i < n + 5n; i++) marks.observe(msg(i, i));
    expect(marks.observe(msg(6n, n + 5n)).duplicate).toBe(true); // within the last HISTORY
    expect(marks.observe(msg(4n, n + 6n)).duplicate).toBe(false); // its slot holds n + 4 now
  });

  it('does not flag a record fetched again (an offset it has seen)', () => {
    const marks = new SequenceMarks();
    expect(duplicates(marks, [msg(1n, 0n), msg(2n, 1n), msg(2n, 1n), msg(1n, 0n)])).toEqual([]);
  });

  it('keeps nodes and boots apart', () => {
    const marks = new SequenceMarks();
    marks.observe(msg(5n, 0n));
    expect(marks.observe({ ...msg(5n, 1n), node: 'n2' }).duplicate).toBe(false);
    expect(marks.observe({ ...msg(5n, 2n), bootId: 'b2' }).duplicate).toBe(false);
    expect(marks.observe(msg(5n, 3n)).duplicate).toBe(true);
  });

  it('the next owner of the partition flags a copy of the last committed message', () => {
    const a = new SequenceMarks();
    for (const e of [msg(1n, 0n), msg(2n, 1n)]) a.observe(e);
    const row = (e: EnvelopeSeen) => ({
      node: e.node,
      boot_id: e.bootId,
      sequence: String(e.sequence),
      kafka_offset: String(e.offset),
    });
    a.commit([row(msg(1n, 0n)), row(msg(2n, 1n))], T0);
    const b = new SequenceMarks();
    b.restore(JSON.parse(JSON.stringify(a.snapshot(0n))));
    // The last committed message's copy is known; an older one's is not (only the last is kept).
    expect(duplicates(b, [msg(2n, 2n), msg(1n, 3n), msg(3n, 4n), msg(3n, 5n)])).toEqual([2n, 5n]);
  });

  it('a snapshot from before copies were detected flags none it has not seen', () => {
    const b = new SequenceMarks();
    b.restore([{ node: 'n1', bootId: 'b1', sequence: '2', seenAtNs: String(T0) }]);
    expect(duplicates(b, [msg(2n, 5n), msg(3n, 6n), msg(3n, 7n)])).toEqual([7n]);
  });

  it('forgets a (node, boot) not heard from within the retention', () => {
    const a = new SequenceMarks();
    a.observe(msg(1n, 0n));
    a.commit([{ node: 'n1', boot_id: 'b1', sequence: '1' }], T0);
    expect(a.snapshot(T0)).toHaveLength(1);
    expect(a.snapshot(T0 + 1n)).toHaveLength(0);
    expect(a.observe(msg(1n, 1n)).duplicate).toBe(false); // forgotten: a first message again
  });
});

describe('alert engine and duplicates', () => {
  it('a copy raises no data_loss and does not move the gap baseline', () => {
    const e = new AlertEngine({
      oomKill: true,
      crashLoopExits: 3,
      crashLoopWindowMs: 60_000,
      tcpSpikeThreshold: 10,
      tcpSpikeWindowMs: 10_000,
      sequenceGap: true,
    });
    const out: Alert[] = [];
    const verdicts = [msg(1n, 0n), msg(2n, 1n), msg(1n, 2n), msg(3n, 3n), msg(5n, 4n)].map(
      (m) => e.observeSequence(m, out).duplicate,
    );
    expect(verdicts).toEqual([false, false, true, false, false]);
    expect(out.map((a) => [a.kind, a.details.after, a.details.missing])).toEqual([['data_loss', '3', '1']]);
  });
});
