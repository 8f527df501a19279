// The query endpoint over a real embedded chDB store: what `./ktrail query`, the report and
// curl use while the pipeline owns the store. Every attack that once got through is tried
// for real: each is refused with a clear error, files and tables stay as they were, and an
// insert running beside a slow or huge query waits no longer than the query's own limit.
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { type QueryEndpoint, queryToken, startQueryEndpoint } from '../../processor/src/query-endpoint.js';

const TIMEOUT_MS = 2_000;
const MAX_RESULT_BYTES = 1_000_000;

describe('query endpoint over chDB: closed by default', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ktrail-query-'));
  const tokenFile = join(dir, 'query-token');
  let store: ClickHouseClient;
  let endpoint: QueryEndpoint;
  let token: string;
  const base = () => `http://127.0.0.1:${endpoint.port}/`;
  const post = (sql: string, headers: Record<string, string> = {}, query = '') =>
    fetch(`${base()}${query}`, {
      method: 'POST',
      body: sql,
      headers: { authorization: `Bearer ${token}`, ...headers },
    });
  const tableCount = async () =>
    Number((await (await post("SELECT count() FROM system.tables WHERE database = 'q'")).text()).trim());

  beforeAll(async () => {
    store = await createClickHouse({ kind: 'chdb', path: join(dir, 'chdb'), database: 'q' });
    await store.command({ query: 'CREATE TABLE q.t (n UInt64, s String) ENGINE = MergeTree ORDER BY n' });
    await insertBatch(store, {
      table: 'q.t',
      rows: [
        { n: 18446744073709551615n, s: 'max' },
        { n: 1, s: 'one' },
      ],
      dedupToken: 't:1',
    });
    token = queryToken(tokenFile);
    endpoint = await startQueryEndpoint({
      client: store,
      port: 0,
      token,
      timeoutMs: TIMEOUT_MS,
      maxResultBytes: MAX_RESULT_BYTES,
    });
  });
  afterAll(async () => {
    await endpoint.close();
    await store.close();
  });

  it('keeps its token in a 0600 file, the same on every start, and refuses a readable one', () => {
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(queryToken(tokenFile)).toBe(token);
    const loose = join(dir, 'loose-token');
    writeFileSync(loose, 'x'.repeat(64), { mode: 0o644 });
    expect(() => queryToken(loose)).toThrow(/readable by others.*chmod 600/);
  });

  it('answers queries with the token: ?query= and the body, formats, bound parameters, u64', async () => {
    expect(await (await fetch(`${base()}ping`)).text()).toBe('Ok.\n');
    expect(await (await post('SELECT n, s FROM q.t ORDER BY n')).text()).toBe(
      '1\tone\n18446744073709551615\tmax\n',
    );
    expect(JSON.parse(await (await post('SELECT count() AS c FROM q.t FORMAT JSONEachRow')).text())).toEqual({
      c: '2',
    });
    expect(await (await post('SELECT s FROM q.t ORDER BY n', {}, '?default_format=CSV')).text()).toBe(
      '"one"\n"max"\n',
    );
    expect(await (await post('SELECT s FROM q.t WHERE n >= {min:UInt64}', {}, '?param_min=2')).text()).toBe(
      'max\n',
    );
    expect(await (await post('', {}, `?query=${encodeURIComponent('SELECT 7')}`)).text()).toBe('7\n');
    // A final join_use_nulls is the one setting a query may set for itself.
    const joined = 'SELECT b.x FROM (SELECT 1 AS k) AS a LEFT JOIN (SELECT 2 AS k, 5 AS x) AS b ON a.k = b.k';
    expect(await (await post(`${joined} SETTINGS join_use_nulls = 1`)).text()).toBe('\\N\n');
    expect((await post(`${joined} SETTINGS max_execution_time = 9999`)).status).toBe(403);
    // @clickhouse/client's URL mode sends the token as the Basic-auth password.
    const basic = Buffer.from(`default:${token}`).toString('base64');
    expect(await (await post('SELECT 8', { authorization: `Basic ${basic}` })).text()).toBe('8\n');
  });

  it('refuses requests without the token, other methods, and anything a browser sends', async () => {
    const noToken = await fetch(base(), { method: 'POST', body: 'SELECT 1' });
    expect(noToken.status).toBe(401);
    expect(await noToken.text()).toMatch(/token is required/);
    expect((await post('SELECT 1', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await post('SELECT 1', { authorization: `Bearer ${token}x` })).status).toBe(401);
    const get = await fetch(`${base()}?query=SELECT%201`, { headers: { authorization: `Bearer ${token}` } });
    expect(get.status).toBe(405);
    // A web page: its fetch names its origin (even with a stolen token, it is refused).
    const page = await post('SELECT 1', { origin: 'https://evil.example' });
    expect(page.status).toBe(403);
    expect(await page.text()).toMatch(/web pages/);
    expect((await post('SELECT 1', { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
  });

  it('refuses every write, DDL, file, URL and server access, by the engine, and changes nothing', async () => {
    const target = join(dir, 'written-by-query');
    const attacks: [string, RegExp][] = [
      [`INSERT INTO FUNCTION file('${target}', 'CSV') SELECT 1`, /single SELECT/],
      ["SELECT * FROM file('/etc/os-release', 'LineAsString')", /readonly/i],
      [`SELECT 1 INTO OUTFILE '${target}'`, /INTO OUTFILE/],
      ['SELECT 1; DROP TABLE q.t', /Multi-statements/],
      ['DROP TABLE q.t', /single SELECT/],
      ["SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", /readonly/i],
      ["SELECT * FROM remote('127.0.0.1:9', system.one)", /readonly/i],
      [
        "SELECT * FROM (SELECT * FROM file('/etc/os-release', 'LineAsString') SETTINGS readonly = 0)",
        /SETTINGS/,
      ],
      ["SELECT 1 UNION ALL SELECT * FROM file('/etc/os-release', 'LineAsString')", /readonly/i],
      ['SET readonly = 0', /single SELECT/],
      ['CREATE TABLE q.evil (a UInt8) ENGINE = Memory', /single SELECT/],
    ];
    const tablesBefore = await tableCount();
    for (const [sql, reason] of attacks) {
      const t0 = Date.now();
      const res = await post(sql);
      const text = await res.text();
      expect(res.ok, `${sql} -> ${res.status} ${text}`).toBe(false);
      expect(text, sql).toMatch(reason);
      expect(text, sql).not.toMatch(/NAME="Debian|PRETTY_NAME/);
      expect(Date.now() - t0, `${sql} answered at once`).toBeLessThan(TIMEOUT_MS);
    }
    expect(existsSync(target)).toBe(false);
    expect(await tableCount()).toBe(tablesBefore);
    expect(await (await post('SELECT count() FROM q.t')).text()).toBe('2\n');
  });

  it('stops a slow query at its time limit, and an insert beside it waits no longer than that', async () => {
    // An endless scan: only the time limit ends it (a query the engine can estimate is refused earlier, 160).
    const slow = post('SELECT count() FROM system.numbers WHERE number % 1000000000 = 999999999');
    await new Promise((r) => setTimeout(r, 200)); // the query holds the store now
    const t0 = Date.now();
    await insertBatch(store, { table: 'q.t', rows: [{ n: 2, s: 'two' }], dedupToken: 't:2' });
    const insertWaitedMs = Date.now() - t0;
    const res = await slow;
    expect(res.ok).toBe(false);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('159'); // TIMEOUT_EXCEEDED
    expect(insertWaitedMs).toBeLessThan(TIMEOUT_MS + 1_500);
    // The failed query's partial output does not leak into the next answer (chDB would hand it on).
    expect(await (await post('SELECT 42')).text()).toBe('42\n');
    expect(await (await post('SELECT count() FROM q.t')).text()).toBe('3\n');
  });

  it('fails a huge result at its size limit instead of growing the process', async () => {
    const rssBefore = process.memoryUsage().rss;
    const res = await post('SELECT number, toString(number) FROM system.numbers LIMIT 100000000');
    const text = await res.text();
    expect(res.ok).toBe(false);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('396'); // TOO_MANY_ROWS_OR_BYTES
    expect(text).toMatch(/Limit for result exceeded/);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(300 * 1024 * 1024);
    expect(await (await post('SELECT 43')).text()).toBe('43\n');
  });

  it('reports engine errors with the ClickHouse exception code', async () => {
    const res = await post('SELECT * FROM no_such_table');
    expect(res.status).toBe(500);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('60');
    expect(await res.text()).toMatch(/Unknown table/);
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(token);
  });
});
