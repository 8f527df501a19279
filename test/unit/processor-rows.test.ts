import { describe, expect, it } from 'vitest';
import { toJsonEachRow } from '../../processor/src/clickhouse/writer.js';
import { u64Value } from '../../processor/src/rows.js';
import { testEventRow } from '../support/event-row.js';

describe('processor rows', () => {
  it('writes every u64, inside arrays too, exactly to JSON', () => {
    const hist = Array.from({ length: 32 }, (_, i) => (i === 31 ? 18446744073709551615n : BigInt(i)));
    const event = {
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
    const row = testEventRow('block_sample', event, {
      timeNs: 1_700_000_000_000_000_000n,
      partition: 2,
      offset: '42',
    }).columns;
    // The time is the bigint ns itself (the Native block takes it as it is), text in JSON.
    expect(row.time).toBe(1_700_000_000_000_000_000n);
    const json = JSON.parse(toJsonEachRow([row]));
    expect(json.time).toBe('1700000000.000000000');
    expect(json.latency_hist[31]).toBe('18446744073709551615');
    expect(json.cgroup_id).toBe('18446744073709551615');
    expect(json.kafka_offset).toBe('42');
    // What a double holds exactly stays a number: exact in JSON, no string to allocate.
    expect(json.latency_hist[30]).toBe(30);
    expect(json.read_bytes).toBe(1);
  });

  it('keeps u64 a number exactly up to 2^53 - 1, decimal text beyond', () => {
    for (const v of [0n, 1n, 4_294_967_296n, 9_007_199_254_740_991n])
      expect(u64Value(v), String(v)).toBe(Number(v));
    for (const v of [9_007_199_254_740_992n, 9_007_199_254_740_993n, 18_446_744_073_709_551_615n])
      expect(u64Value(v), String(v)).toBe(String(v));
  });
});
