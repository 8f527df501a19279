// The query endpoint over a real embedded chDB store: what `./ktrail query` and curl use
// while the pipeline owns the store.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { type QueryEndpoint, startQueryEndpoint } from '../../processor/src/query-endpoint.js';

describe('ClickHouse-compatible query endpoint over chDB', () => {
  let store: ClickHouseClient;
  let endpoint: QueryEndpoint;
  let readOnly: QueryEndpoint;
  const base = () => `http://127.0.0.1:${endpoint.port}`;

  beforeAll(async () => {
    store = await createClickHouse({
      kind: 'chdb',
      path: mkdtempSync(join(tmpdir(), 'ktrail-query-')),
      database: 'q',
    });
    endpoint = await startQueryEndpoint({ client: store, port: 0 });
    readOnly = await startQueryEndpoint({ client: store, port: 0, readOnly: true });
  });
  afterAll(async () => {
    await endpoint.close();
    await readOnly.close();
    await store.close();
  });

  it('answers /ping like ClickHouse', async () => {
    expect(await (await fetch(`${base()}/ping`)).text()).toBe('Ok.\n');
  });

  it('runs DDL, inserts and queries from ?query= and the body', async () => {
    const post = (sql: string) => fetch(`${base()}/`, { method: 'POST', body: sql });
    expect((await post('CREATE TABLE q.t (n UInt64, s String) ENGINE = MergeTree ORDER BY n')).status).toBe(
      200,
    );
    expect((await post("INSERT INTO q.t VALUES (18446744073709551615, 'max'), (1, 'one')")).status).toBe(200);
    const tsv = await (
      await fetch(`${base()}/?query=${encodeURIComponent('SELECT n, s FROM q.t ORDER BY n')}`)
    ).text();
    expect(tsv).toBe('1\tone\n18446744073709551615\tmax\n');
    const json = await (await post('SELECT count() AS c FROM q.t FORMAT JSONEachRow')).text();
    expect(JSON.parse(json)).toEqual({ c: '2' });
    const csv = await (
      await fetch(`${base()}/?default_format=CSV`, { method: 'POST', body: 'SELECT s FROM q.t ORDER BY n' })
    ).text();
    expect(csv).toBe('"one"\n"max"\n');
    const bound = await (
      await fetch(`${base()}/?param_min=2`, {
        method: 'POST',
        body: 'SELECT s FROM q.t WHERE n >= {min:UInt64}',
      })
    ).text();
    expect(bound).toBe('max\n');
  });

  it('reports errors with the ClickHouse exception code', async () => {
    const res = await fetch(`${base()}/`, { method: 'POST', body: 'SELECT * FROM no_such_table' });
    expect(res.status).toBe(500);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('60');
    expect(await res.text()).toMatch(/Unknown table/);
  });

  it('refuses writes when read-only', async () => {
    const res = await fetch(`http://127.0.0.1:${readOnly.port}/`, { method: 'POST', body: 'DROP TABLE q.t' });
    expect(res.status).toBe(403);
    const ok = await fetch(`http://127.0.0.1:${readOnly.port}/`, { method: 'POST', body: 'SELECT 1' });
    expect(await ok.text()).toBe('1\n');
  });
});
