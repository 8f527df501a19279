// Where a batch of rows goes: one implementation per backend, picked once per client.
// - chDB: a Native block when every column is one native-format.ts writes (event tables),
//   else JSONEachRow through chDB's own insert; settings scoped to that one INSERT.
// - a server: JSONEachRow over HTTP, the token as a query setting.
// One attempt per call, errors classified (writer.ts): the callers own their retries.
// Concurrent shareable inserts into one table go as one statement (insert-combiner.ts).
import { Readable } from 'node:stream';
import type { ClickHouseClient } from '@clickhouse/client';
import { PoisonError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { EventColumns } from '../event-columns.js';
import { type ClickHouseInfo, describeClickHouse } from './client.js';
import { combineInserts, type InsertStatements } from './insert-combiner.js';
import { encodeNativeBlock, NativeValueError } from './native-format.js';
import {
  classifyClickHouseError,
  columnTypes,
  type InsertBatchParams,
  type InsertResult,
  toJsonEachRow,
} from './writer.js';

const log = createLogger('processor.clickhouse.row-store');

export interface RowStore {
  /** One insert of `params.rows` into `params.table` under its token; rejects with a classified KtrailError. */
  insert(params: InsertBatchParams): Promise<InsertResult>;
  /** Statements sent, and inserts that shared one (insert-combiner.ts). */
  readonly counts: InsertStatements;
}

// The client-level settings of the factory do not reach chDB's native insert: repeat the
// ones that matter for inserts.
const CHDB_INSERT_SETTINGS = {
  async_insert: 0,
  input_format_skip_unknown_fields: 0,
  date_time_input_format: 'best_effort',
};

type ChdbInfo = ClickHouseInfo & Required<Pick<ClickHouseInfo, 'rawInsert' | 'insertNative'>>;

const stores = new WeakMap<ClickHouseClient, RowStore>();

/** The client's row store (chDB or server), made once per client. */
export function rowStoreOf(client: ClickHouseClient): RowStore {
  let store = stores.get(client);
  if (store === undefined) {
    const info = describeClickHouse(client);
    const backend =
      info?.rawInsert !== undefined && info.insertNative !== undefined
        ? chdbRowStore(client, info as ChdbInfo)
        : serverRowStore(client, info);
    store = combineInserts(backend.insert);
    stores.set(client, store);
  }
  return store;
}

function qualified(table: string, info: ClickHouseInfo | undefined): string {
  return table.includes('.') || info === undefined ? table : `${info.database}.${table}`;
}

/** Rows as JSONEachRow text, with their count. */
function jsonBody(table: string, params: InsertBatchParams): { body: string; count: number } {
  try {
    return { body: toJsonEachRow(params.rows), count: params.rows.length };
  } catch (err) {
    throw new PoisonError(`rows for ${table} cannot be serialized: ${(err as Error).message}`, {
      cause: err,
      context: { table, dedupToken: params.dedupToken },
    });
  }
}

type BackendStore = Pick<RowStore, 'insert'>;

function chdbRowStore(client: ClickHouseClient, info: ChdbInfo): BackendStore {
  return {
    async insert(params) {
      const table = qualified(params.table, info);
      const settings = { ...CHDB_INSERT_SETTINGS, insert_deduplication_token: params.dedupToken };
      const native = await nativeBlock(client, table, params);
      if (native !== undefined) {
        const count = params.rows.length;
        if (count === 0) return { rows: 0, attempts: 0, format: 'Native' };
        try {
          await info.insertNative({ table, columns: native.columns, block: native.block, settings });
        } catch (err) {
          throw classifyClickHouseError(err, { table, dedupToken: params.dedupToken, rows: count });
        }
        return { rows: count, attempts: 1, format: 'Native' };
      }
      const { body, count } = jsonBody(table, params);
      if (count === 0) return { rows: 0, attempts: 0, format: 'JSONEachRow' };
      try {
        await info.rawInsert({ table, values: body, format: 'JSONEachRow', settings });
      } catch (err) {
        throw classifyClickHouseError(err, { table, dedupToken: params.dedupToken, rows: count });
      }
      return { rows: count, attempts: 1, format: 'JSONEachRow' };
    },
  };
}

/** The rows as a Native block, or undefined when this table's columns need the JSON path. */
async function nativeBlock(
  client: ClickHouseClient,
  table: string,
  params: InsertBatchParams,
): Promise<{ block: Buffer; columns: readonly string[] } | undefined> {
  const rows = params.rows;
  if (rows.length === 0) return undefined;
  try {
    return encodeNativeBlock(
      rows instanceof EventColumns ? rows : (rows as Record<string, unknown>[]),
      await columnTypes(client, table),
    );
  } catch (err) {
    if (err instanceof NativeValueError)
      throw new PoisonError(`rows for ${table} out of range: ${err.message}`, {
        cause: err,
        context: { table, dedupToken: params.dedupToken, reason: 'out_of_range' },
      });
    // The column lookup failed (or the encoder met something it did not expect): the JSON
    // path still works, and its errors are classified.
    log.warn(
      { table, err: (err as Error).message },
      'Native encoding unavailable for this insert; JSONEachRow',
    );
    return undefined;
  }
}

function serverRowStore(client: ClickHouseClient, info: ClickHouseInfo | undefined): BackendStore {
  return {
    async insert(params) {
      const table = qualified(params.table, info);
      const { body, count } = jsonBody(table, params);
      if (count === 0) return { rows: 0, attempts: 0, format: 'JSONEachRow' };
      // Servers without the setting were allowed explicitly (see ServerConfig.allowWithoutDedupToken).
      const settings = info?.dedupToken === false ? {} : { insert_deduplication_token: params.dedupToken };
      try {
        // exec with a raw body (client.insert would JSON.stringify each row again), in a
        // fresh one-chunk stream per call: a retry resends identical bytes.
        const result = await client.exec({
          query: `INSERT INTO ${table} FORMAT JSONEachRow`,
          values: Readable.from([body], { objectMode: false }),
          clickhouse_settings: settings,
        });
        result.stream.resume(); // nothing to read; drain so the socket returns to the pool
      } catch (err) {
        throw classifyClickHouseError(err, { table, dedupToken: params.dedupToken, rows: count });
      }
      return { rows: count, attempts: 1, format: 'JSONEachRow' };
    },
  };
}
