// The HTTP transport path against a real ClickHouse server: Debian's clickhouse-server 18.16,
// started by deploy/local/clickhouse-server.sh. Too old for ktrail's schema (and for dedup
// tokens), so these tests use a simple table: connect, insert, error classification, and a
// server restart in the middle of an insert's retries.
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ConfigError, KtrailError, PoisonError } from '../../common/errors.js';
import { createClickHouse, describeClickHouse } from '../../processor/src/clickhouse/client.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { clickHouseServerMissing, serverScript, uniqueName } from '../support/clickhouse.js';
import { itReal } from '../support/real.js';

const server = await clickHouseServerMissing();
const url = server.endpoint?.url ?? 'http://127.0.0.1:1';

describe('ClickHouse server over HTTP (clickhouse-server 18.16)', () => {
  const database = uniqueName('http');
  let client: ClickHouseClient;

  beforeAll(async () => {
    if (server.missing !== undefined) return;
    client = await createClickHouse({ kind: 'server', url, database, allowWithoutDedupToken: true });
    await client.command({
      query: `CREATE TABLE ${database}.readings (id UInt64, node String, v Float64) ENGINE = MergeTree ORDER BY id`,
    });
  });
  afterAll(async () => {
    if (server.missing !== undefined) return;
    // The restart test may leave the server down if it failed halfway: bring it back first.
    await serverScript('start').catch(() => undefined);
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await client?.close();
    if (server.endpoint?.startedHere) await serverScript('stop');
  });

  const count = async () => {
    const rs = await client.query({
      query: `SELECT count() AS n FROM ${database}.readings`,
      format: 'JSONEachRow',
    });
    return Number((await rs.json<{ n: string }>())[0]?.n);
  };

  itReal(server.missing)('refuses a server without dedup tokens unless explicitly allowed', async () => {
    const err = await createClickHouse({ kind: 'server', url, database }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err.message)).toMatch(/lacks insert_deduplication_token/);
    expect(describeClickHouse(client)).toMatchObject({
      kind: 'server',
      version: '18.16.1',
      dedupToken: false,
    });
  });

  itReal(server.missing)('connects with a user and password, and over TLS with a private CA', async () => {
    const ep = server.endpoint!;
    const withUser = await createClickHouse({
      kind: 'server',
      url,
      database,
      ...ep.user,
      allowWithoutDedupToken: true,
    });
    const rs = await withUser.query({
      query: `SELECT count() AS n FROM ${database}.readings`,
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toHaveLength(1);
    await withUser.close();

    const wrong = await createClickHouse({
      kind: 'server',
      url,
      database,
      username: ep.user.username,
      password: 'not-it',
      allowWithoutDedupToken: true,
    }).catch((e) => e);
    expect(String(wrong.message)).toMatch(/Code: 193.*Wrong password/);

    const tls = await createClickHouse({
      kind: 'server',
      url: ep.httpsUrl,
      database,
      tls: { caFile: ep.caFile },
      allowWithoutDedupToken: true,
    });
    expect(describeClickHouse(tls)).toMatchObject({ kind: 'server', version: '18.16.1' });
    await insertBatch(tls, {
      table: 'readings',
      rows: [{ id: 7, node: 'tls', v: 1 }],
      dedupToken: 'readings:t:0:tls',
    });
    const tlsRows = await tls.query({
      query: `SELECT count() AS n FROM ${database}.readings WHERE node = 'tls'`,
      format: 'JSONEachRow',
    });
    expect(await tlsRows.json()).toEqual([{ n: '1' }]);
    await tls.close();

    // Without the CA, the server's certificate is not trusted.
    const untrusted = await createClickHouse({
      kind: 'server',
      url: ep.httpsUrl,
      database,
      allowWithoutDedupToken: true,
    }).catch((e) => e);
    expect(String(untrusted.code ?? untrusted.message)).toMatch(/CERT|certificate|VERIFY/i);
  });

  itReal(server.missing)('insertBatch writes rows, UInt64 max intact', async () => {
    const before = await count();
    const max = 2n ** 64n - 1n;
    const rows = Array.from({ length: 1000 }, (_, i) => ({ id: BigInt(i), node: 'n1', v: i / 4 }));
    rows.push({ id: max, node: 'n1', v: 0 });
    const res = await insertBatch(client, { table: 'readings', rows, dedupToken: 'readings:t:0:0-1000' });
    expect(res).toEqual({ rows: 1001, attempts: 1, format: 'JSONEachRow' });
    expect((await count()) - before).toBe(1001);
    const rs = await client.query({
      query: `SELECT max(id) AS m FROM ${database}.readings`,
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([{ m: max.toString() }]);
  });

  itReal(server.missing)(
    'an insert retried while the server is down succeeds once it is back',
    async () => {
      const before = await count();
      await serverScript('stop');
      const rows = Array.from({ length: 100 }, (_, i) => ({ id: 10_000 + i, node: 'restart', v: 1 }));
      const pending = insertBatch(
        client,
        { table: 'readings', rows, dedupToken: 'readings:t:0:restart' },
        { retry: { maxAttempts: 60, initialDelayMs: 200, maxDelayMs: 1_000 } },
      );
      // Let it fail a few times against the stopped server, then bring the server back.
      await new Promise((r) => setTimeout(r, 3_000));
      await serverScript('start');
      const res = await pending;
      expect(res.attempts).toBeGreaterThan(1);
      expect((await count()) - before).toBe(100);
    },
    180_000,
  );

  itReal(server.missing)(
    'server down for 60 s: the batches waiting in retries all land once it is back, none lost or doubled',
    async () => {
      const before = await count();
      await serverScript('stop');
      const started = Date.now();
      // Eight partitions' batches pile up while the server is away.
      const backlog = Array.from({ length: 8 }, (_, p) =>
        insertBatch(
          client,
          {
            table: 'readings',
            rows: Array.from({ length: 500 }, (_, i) => ({
              id: 100_000 + p * 1000 + i,
              node: `p${p}`,
              v: i,
            })),
            dedupToken: `readings:t:${p}:0-499`,
          },
          { retry: { maxAttempts: Number.POSITIVE_INFINITY, initialDelayMs: 200, maxDelayMs: 2_000 } },
        ),
      );
      await new Promise((r) => setTimeout(r, 60_000));
      await serverScript('start');
      const results = await Promise.all(backlog);
      expect(Date.now() - started).toBeGreaterThanOrEqual(60_000);
      for (const r of results) expect(r.attempts).toBeGreaterThan(5);
      expect((await count()) - before).toBe(8 * 500);
      const rs = await client.query({
        query: `SELECT count() AS n, uniqExact(id) AS ids FROM ${database}.readings WHERE id BETWEEN 100000 AND 199999`,
        format: 'JSONEachRow',
      });
      expect(await rs.json()).toEqual([{ n: '4000', ids: '4000' }]);
    },
    240_000,
  );

  itReal(server.missing)('a bad row is poison (not retried); an unknown table needs a person', async () => {
    const bad = await insertBatch(client, {
      table: 'readings',
      rows: [{ id: 'not a number', node: 'n1', v: 1 }],
      dedupToken: 'readings:t:0:bad',
    }).catch((e) => e);
    expect(bad).toBeInstanceOf(PoisonError);
    expect(bad.retriable).toBe(false);
    expect(bad.context).toMatchObject({ clickhouseCode: 27, attempt: 1 });

    const missing = await insertBatch(client, {
      table: 'no_such_table',
      rows: [{ id: 1 }],
      dedupToken: 'no_such_table:t:0:1',
    }).catch((e) => e);
    expect(missing).toBeInstanceOf(KtrailError);
    expect(missing).not.toBeInstanceOf(PoisonError);
    expect(missing.retriable).toBe(false);
    expect(missing.context).toMatchObject({ clickhouseCode: 60, attempt: 1 });
  });
});
