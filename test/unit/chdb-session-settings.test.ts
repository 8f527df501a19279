// chDB's session keeps what a SET gave it: the store sends a setting only when the session
// does not hold that value yet, and everything again after a failed statement
// (processor/src/clickhouse/client.ts settingsOncePerSession).
import { describe, expect, it } from 'vitest';
import { settingsOncePerSession } from '../../processor/src/clickhouse/client.js';

type Params = { query: string; clickhouse_settings?: Record<string, unknown> };

/** A connection that records the settings each statement carried, and fails on demand. */
function fakeConnection() {
  const sent: Array<{ method: string; settings: Record<string, unknown> | undefined }> = [];
  let failNext = false;
  const run = (method: string) => async (params: Params) => {
    sent.push({ method, settings: params.clickhouse_settings });
    if (failNext) {
      failNext = false;
      throw new Error('Code: 62. Syntax error');
    }
    return { method, query: params.query };
  };
  const conn = {
    query: run('query'),
    exec: run('exec'),
    command: run('command'),
    insert: run('insert'),
    chdb: { rawInsert: 'the extension' },
    close: async () => 'closed',
  };
  return {
    conn: settingsOncePerSession(conn as never) as unknown as typeof conn,
    sent,
    failNextStatement: () => {
      failNext = true;
    },
  };
}

const CONSTANT = { async_insert: 0, session_timezone: 'UTC', insert_deduplication_token: '' };

describe("the chDB session's settings", () => {
  it('are sent once, then only when a statement asks for another value', async () => {
    const { conn, sent } = fakeConnection();
    await conn.command({ query: 'SELECT 1', clickhouse_settings: CONSTANT });
    await conn.query({ query: 'SELECT 2', clickhouse_settings: CONSTANT });
    await conn.insert({
      query: 'INSERT 1',
      clickhouse_settings: { ...CONSTANT, insert_deduplication_token: 't1' },
    });
    await conn.exec({ query: 'SELECT 3', clickhouse_settings: CONSTANT });
    await conn.exec({ query: 'SELECT 4', clickhouse_settings: CONSTANT });
    expect(sent).toEqual([
      { method: 'command', settings: CONSTANT },
      { method: 'query', settings: {} },
      { method: 'insert', settings: { insert_deduplication_token: 't1' } },
      // The token the insert left on the session is reset before the next statement.
      { method: 'exec', settings: { insert_deduplication_token: '' } },
      { method: 'exec', settings: {} },
    ]);
  });

  it('are all sent again after a failed statement, whose SETs may or may not have run', async () => {
    const { conn, sent, failNextStatement } = fakeConnection();
    await conn.command({ query: 'SELECT 1', clickhouse_settings: CONSTANT });
    failNextStatement();
    await expect(
      conn.insert({
        query: 'INSERT bad',
        clickhouse_settings: { ...CONSTANT, insert_deduplication_token: 't2' },
      }),
    ).rejects.toThrow('Syntax error');
    await conn.command({ query: 'SELECT 2', clickhouse_settings: CONSTANT });
    expect(sent.map((s) => s.settings)).toEqual([CONSTANT, { insert_deduplication_token: 't2' }, CONSTANT]);
  });

  it('pass default_format through every time, and skip undefined values', async () => {
    const { conn, sent } = fakeConnection();
    const settings = { default_format: 'JSONEachRow', async_insert: 0, readonly: undefined };
    await conn.query({ query: 'SELECT 1', clickhouse_settings: settings });
    await conn.query({ query: 'SELECT 2', clickhouse_settings: settings });
    await conn.query({ query: 'SELECT 3' });
    expect(sent.map((s) => s.settings)).toEqual([
      { default_format: 'JSONEachRow', async_insert: 0 },
      { default_format: 'JSONEachRow' },
      {},
    ]);
  });

  it('leave everything else of the connection as it is', async () => {
    const { conn } = fakeConnection();
    expect(conn.chdb).toEqual({ rawInsert: 'the extension' });
    expect(await conn.close()).toBe('closed');
    expect(await conn.query({ query: 'SELECT 9' })).toEqual({ method: 'query', query: 'SELECT 9' });
  });
});
