import { describe, expect, it } from 'vitest';
import { buildRow } from '../../processor/src/rows.js';

describe('processor rows', () => {
  it('writes every u64, inside arrays too, as exact JSON text', () => {
    const batch = { node: 'n', bootId: 'b', sequence: 1n, producedAtNs: 0n, bootEpochNs: 0n, events: [] };
    const hist = Array.from({ length: 32 }, (_, i) => (i === 31 ? 18446744073709551615n : BigInt(i)));
    const event = {
      kind: 'block_sample',
      tsNs: 5n,
      cgroupId: 18446744073709551615n,
      pid: 0,
      tgid: 0,
      flags: 0,
      readBytes: 1n,
      writeBytes: 2n,
      readIos: 3n,
      writeIos: 4n,
      latencyHist: hist,
      intervalNs: 1_000_000_000n,
    };
    // biome-ignore lint/suspicious/noExplicitAny: a decoded Avro event, as the codec hands it over
    const row = buildRow(batch as any, event as any, 1_700_000_000_000_000_000n, 2, '42');
    const json = JSON.parse(JSON.stringify(row));
    expect(json.latency_hist[31]).toBe('18446744073709551615');
    expect(json.cgroup_id).toBe('18446744073709551615');
    expect(json.kafka_offset).toBe('42');
  });
});
