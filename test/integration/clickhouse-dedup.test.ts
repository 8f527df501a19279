// Exactly-once rows from at-least-once delivery, on the real chDB engine: a batch inserted
// twice with its token lands once, in the raw table AND in every rollup fed by materialized
// views; two identical batches with different tokens both land; UInt64 keeps full precision.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, KtrailError, PoisonError, TransientError } from '../../common/errors.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { classifyClickHouseError, insertBatch } from '../../processor/src/clickhouse/writer.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { fixtureMs, msToNs } from '../support/fixture-time.js';
import { itReal } from '../support/real.js';

const BASE_NS = msToNs(fixtureMs(1, 12));

function cpuBatch(cgroupId: bigint, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    node: 'node-d',
    boot_id: 'boot-d',
    time: BASE_NS + BigInt(i) * 1_000_000_000n,
    ts_ns: BigInt(i) * 1_000_000_000n,
    cgroup_id: cgroupId,
    pid: 0,
    tgid: 0,
    cpu_ns: 250_000_000n,
    switches: 3n,
    interval_ns: 1_000_000_000n,
    join_state: 'host',
  }));
}

describe('insert deduplication', () => {
  let ch: TestChdb;
  beforeAll(async () => {
    ch = await createTestChdb('dedup');
    await migrate(ch.client);
  });
  afterAll(async () => {
    await ch?.close();
  });

  const counts = async (cg: bigint) => {
    const db = ch.database;
    const [raw] = await ch.rows<{ n: string }>(
      `SELECT count() AS n FROM ${db}.cpu_sample WHERE cgroup_id = ${cg}`,
    );
    const level = async (t: string) => {
      const [r] = await ch.rows<{ cpu: string; sw: string }>(
        `SELECT sum(cpu_ns) AS cpu, sum(cpu_switches) AS sw FROM ${db}.${t} WHERE cgroup_id = ${cg}`,
      );
      return r;
    };
    return {
      raw: Number(raw?.n),
      m: await level('usage_1m'),
      h: await level('usage_1h'),
      d: await level('usage_1d'),
    };
  };

  itReal(undefined)(
    'the same batch with the same token lands once, also in the rollup MV targets',
    async () => {
      const cg = 1001n;
      const rows = cpuBatch(cg, 90);
      const token = 'cpu_sample:events:3:1000-1089';
      const first = await insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: token });
      expect(first).toEqual({ rows: 90, attempts: 1, format: 'Native' });
      const once = await counts(cg);
      // A retry after a crash rebuilds the same batch: same rows, same token.
      await insertBatch(ch.client, { table: 'cpu_sample', rows: cpuBatch(cg, 90), dedupToken: token });
      const twice = await counts(cg);
      const expected = { cpu: String(90 * 250_000_000), sw: String(90 * 3) };
      expect(once).toEqual({ raw: 90, m: expected, h: expected, d: expected });
      expect(twice).toEqual(once);
    },
  );

  itReal(undefined)(
    'a retry after a half-done insert completes the MV target once (source written, view failed)',
    async () => {
      // The case the materialized-view dedup setting exists for: the first attempt wrote the
      // source block, then failed in a view. The retry is dropped by the source table, yet the
      // view target must still get the block, once.
      const db = ch.database;
      await ch.client.command({
        query: `CREATE TABLE ${db}.src (x UInt64) ENGINE = MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 100`,
      });
      await ch.client.command({
        query: `CREATE TABLE ${db}.dst (x UInt64, n UInt64) ENGINE = SummingMergeTree ORDER BY x
                SETTINGS non_replicated_deduplication_window = 100`,
      });
      await ch.client.command({
        query: `CREATE MATERIALIZED VIEW ${db}.src_to_dst TO ${db}.dst AS SELECT x, count() AS n FROM ${db}.src GROUP BY x`,
      });
      await ch.client.command({ query: `ALTER TABLE ${db}.dst ADD CONSTRAINT fails_for_now CHECK x > 100` });
      const rows = [{ x: 1 }, { x: 2 }, { x: 2 }];
      const token = 'src:events:0:0-2';
      await expect(insertBatch(ch.client, { table: 'src', rows, dedupToken: token })).rejects.toThrow(
        /fails_for_now/,
      );
      const sums = async () => {
        const [src] = await ch.rows<{ n: string }>(`SELECT count() AS n FROM ${db}.src`);
        const [dst] = await ch.rows<{ n: string }>(`SELECT sum(n) AS n FROM ${db}.dst`);
        return { src: Number(src?.n), dst: Number(dst?.n) };
      };
      expect(await sums()).toEqual({ src: 3, dst: 0 });
      await ch.client.command({ query: `ALTER TABLE ${db}.dst DROP CONSTRAINT fails_for_now` });
      await insertBatch(ch.client, { table: 'src', rows, dedupToken: token });
      expect(await sums()).toEqual({ src: 3, dst: 3 });
      await insertBatch(ch.client, { table: 'src', rows, dedupToken: token });
      expect(await sums()).toEqual({ src: 3, dst: 3 });
    },
  );

  itReal(undefined)('two identical batches with different tokens both land', async () => {
    const cg = 1002n;
    const rows = cpuBatch(cg, 10);
    await insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: 'cpu_sample:events:0:0-9' });
    await insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: 'cpu_sample:events:0:10-19' });
    const c = await counts(cg);
    const expected = { cpu: String(20 * 250_000_000), sw: String(20 * 3) };
    expect(c).toEqual({ raw: 20, m: expected, h: expected, d: expected });
  });

  itReal(undefined)('concurrent inserts keep their own tokens (parallel partitions)', async () => {
    const cg = 1007n;
    const rows = cpuBatch(cg, 3);
    // 16 batches at once, identical content; tokens 0..7 each used twice: 8 must land.
    await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: `cpu_sample:events:${i % 8}:0-2` }),
      ),
    );
    const c = await counts(cg);
    const expected = { cpu: String(8 * 3 * 250_000_000), sw: String(8 * 3 * 3) };
    expect(c).toEqual({ raw: 24, m: expected, h: expected, d: expected });
  });

  itReal(undefined)('a token does not leak onto the next insert of the chDB session', async () => {
    // chDB applies settings with SET on a long-lived session; without the factory's reset the
    // next insert would inherit this token and be dropped as its duplicate.
    const db = ch.database;
    await ch.client.command({
      query: `CREATE TABLE ${db}.leak (x UInt64) ENGINE = MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 100`,
    });
    await insertBatch(ch.client, { table: 'leak', rows: [{ x: 1 }], dedupToken: 'leak:1' });
    await ch.client.insert({ table: `${db}.leak`, values: [{ x: 2 }], format: 'JSONEachRow' });
    const rows = await ch.rows<{ x: string }>(`SELECT x FROM ${db}.leak ORDER BY x`);
    expect(rows).toEqual([{ x: '1' }, { x: '2' }]);
  });

  itReal(undefined)('session settings are sent once, tokens still apply to one insert each', async () => {
    // The store sends a setting only when the session does not hold it (settingsOncePerSession):
    // a token given as a setting is SET on the session, and reset before the next statement.
    const db = ch.database;
    await ch.client.command({
      query: `CREATE TABLE ${db}.session_token (x UInt64) ENGINE = MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 100`,
    });
    const insert = (x: number, token?: string, table = 'session_token') =>
      ch.client.insert({
        table: `${db}.${table}`,
        values: [{ x }],
        format: 'JSONEachRow',
        ...(token === undefined ? {} : { clickhouse_settings: { insert_deduplication_token: token } }),
      });
    await insert(10, 'session:1');
    await insert(10, 'session:1'); // the same token: dropped as a duplicate
    await insert(10); // no token: the first one's is not on the session any more
    await expect(
      ch.client.command({ query: `SELECT no_such_column FROM ${db}.session_token` }),
    ).rejects.toThrow();
    await insert(11, 'session:1'); // after a failed statement the settings are sent again
    await insert(12);
    // An insert that fails after its token was SET on the session (no such table): the next
    // two inserts without a token both land, so the failed one's token was reset.
    await expect(insert(13, 'session:2', 'no_such_table')).rejects.toThrow();
    await insert(13);
    await insert(14);
    // Still held after the failures: 64-bit integers come back as JSON strings.
    expect(await ch.rows<{ x: string }>(`SELECT x FROM ${db}.session_token ORDER BY x`)).toEqual([
      { x: '10' },
      { x: '10' },
      { x: '12' },
      { x: '13' },
      { x: '14' },
    ]);
  });

  itReal(undefined)('TOO_MANY_PARTS is retried until merges catch up, and the batch lands once', async () => {
    const db = ch.database;
    await ch.client.command({
      query: `CREATE TABLE ${db}.parts (x UInt64) ENGINE = MergeTree ORDER BY x
              SETTINGS parts_to_throw_insert = 3, parts_to_delay_insert = 2, max_delay_to_insert = 1,
                       non_replicated_deduplication_window = 100`,
    });
    await ch.client.command({ query: `SYSTEM STOP MERGES ${db}.parts` });
    for (let i = 0; i < 3; i++) {
      await insertBatch(ch.client, { table: 'parts', rows: [{ x: i }], dedupToken: `parts:${i}` });
    }
    const pending = insertBatch(
      ch.client,
      { table: 'parts', rows: [{ x: 9 }], dedupToken: 'parts:9' },
      { retry: { maxAttempts: 40, initialDelayMs: 100, maxDelayMs: 500 } },
    );
    await new Promise((r) => setTimeout(r, 1_000));
    await ch.client.command({ query: `SYSTEM START MERGES ${db}.parts` });
    await ch.client.command({ query: `OPTIMIZE TABLE ${db}.parts FINAL` });
    const res = await pending;
    expect(res.attempts).toBeGreaterThan(1);
    expect(await ch.rows(`SELECT x FROM ${db}.parts ORDER BY x`)).toEqual([
      { x: '0' },
      { x: '1' },
      { x: '2' },
      { x: '9' },
    ]);
  });

  itReal(undefined)('UInt64 max (cgroup id, offsets) round-trips through insertBatch', async () => {
    const max = 2n ** 64n - 1n;
    const rows = cpuBatch(max, 1).map((r) => ({ ...r, cpu_ns: max, kafka_offset: max - 1n }));
    await insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: 'cpu_sample:events:0:max' });
    const got = await ch.rows<{ cgroup_id: string; cpu_ns: string; kafka_offset: string; t: string }>(
      `SELECT cgroup_id, cpu_ns, kafka_offset, toUnixTimestamp64Nano(time) AS t FROM ${ch.database}.cpu_sample
       WHERE cgroup_id = ${max}`,
    );
    expect(got).toEqual([
      {
        cgroup_id: max.toString(),
        cpu_ns: max.toString(),
        kafka_offset: (max - 1n).toString(),
        t: BASE_NS.toString(),
      },
    ]);
  });

  itReal(undefined)('never inserts without a token; bad rows are poison, not retried', async () => {
    await expect(
      insertBatch(ch.client, { table: 'cpu_sample', rows: cpuBatch(1n, 1), dedupToken: '' }),
    ).rejects.toBeInstanceOf(ConfigError);
    const bad = cpuBatch(1004n, 1).map((r) => ({ ...r, cpu_ns: 'lots' }));
    const err = await insertBatch(ch.client, { table: 'cpu_sample', rows: bad, dedupToken: 'bad:1' }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(PoisonError);
    expect(err.retriable).toBe(false);
    expect(err.context.attempt).toBe(1);
    // A row without its wall-clock time would be dropped by the TTL: the table refuses it.
    const { time: _time, ...noTime } = cpuBatch(1005n, 1)[0]!;
    const err2 = await insertBatch(ch.client, {
      table: 'cpu_sample',
      rows: [noTime],
      dedupToken: 'bad:2',
    }).catch((e) => e);
    expect(err2).toBeInstanceOf(PoisonError);
    expect(String(err2.message)).toMatch(/time_is_set/);
    // A field with no column is an error, not silently dropped data.
    const extra = cpuBatch(1006n, 1).map((r) => ({ ...r, not_a_column: 1 }));
    const err3 = await insertBatch(ch.client, {
      table: 'cpu_sample',
      rows: extra,
      dedupToken: 'bad:3',
    }).catch((e) => e);
    expect(err3).toBeInstanceOf(PoisonError);
    expect(String(err3.message)).toMatch(/not_a_column/);
  });
});

describe('error classification (no engine needed)', () => {
  const netError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:18123`), { code });
  it.each([
    ['socket refused', netError('ECONNREFUSED'), TransientError],
    ['socket reset', netError('ECONNRESET'), TransientError],
    ['client timeout', new Error('Timeout error.'), TransientError],
    [
      'too many parts (new servers)',
      Object.assign(new Error('Too many parts'), { code: '252' }),
      TransientError,
    ],
    [
      'memory limit (18.x text)',
      new Error('Code: 241, e.displayText() = DB::Exception: Memory limit'),
      TransientError,
    ],
    ['parse error (chDB text)', new Error('Code: 27. DB::Exception: Cannot parse input'), PoisonError],
    ['unknown table', Object.assign(new Error('Table x.y does not exist'), { code: '60' }), KtrailError],
    ['a bug in the caller', new Error('Insert for JSONEachRow expected Readable Stream'), KtrailError],
  ])('%s', (_name, err, expected) => {
    const c = classifyClickHouseError(err, { table: 't' });
    expect(c.constructor).toBe(expected);
    expect(c.retriable).toBe(expected === TransientError);
    expect(c.context.table).toBe('t');
  });
});
