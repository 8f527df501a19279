// The processor's own outputs, single-object encoded in one pass through a shared scratch
// buffer: every size reads back whole (small, past the scratch, after it grew), and a
// message already handed out is never overwritten by the next one.
import { describe, expect, it } from 'vitest';
import { createOutputReaders, createProcessorCodec } from '../../processor/src/codec.js';

const HEADER = 10; // C3 01 + the schema's 8-byte fingerprint

function batch(events: number, attributeBytes: number) {
  return {
    node: 'node-7',
    sourcePartition: 3,
    firstOffset: 100n,
    lastOffset: 100n + BigInt(events),
    events: Array.from({ length: events }, (_, i) => ({
      kind: 'proc_exec',
      timeNs: 1_764_000_000_000_000_000n + BigInt(i),
      cgroupId: 10_000n + BigInt(i % 7),
      pid: 100 + i,
      tgid: 100 + i,
      joinState: 'joined',
      containerId: 'c'.repeat(64),
      containerName: `app-${i % 5}`,
      image: 'busybox:1',
      pod: 'pod-ünï',
      namespace: 'prod',
      attributes: { filename: '/bin/sh', args: 'x'.repeat(attributeBytes), ts_ns: String(i) },
    })),
  };
}

describe('processor output codec', () => {
  it('encodes each size in one buffer of its own that reads back whole', () => {
    const codec = createProcessorCodec();
    const { enriched } = createOutputReaders();
    const cases = [batch(1, 10), batch(500, 100), batch(2_000, 400), batch(3, 10)]; // the third outgrows 256 KiB
    const encoded = cases.map((b) => codec.encodeEnriched(b as never));
    expect(encoded[2]!.length).toBeGreaterThan(512 * 1024);
    encoded.forEach((buf, i) => {
      expect(buf.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
      expect(buf.subarray(2, HEADER)).toEqual(encoded[0]!.subarray(2, HEADER));
      // Decoded after every later encode: nothing shared with the scratch buffer.
      expect(enriched.fromBuffer(buf.subarray(HEADER))).toEqual(cases[i]);
    });
  });
});
