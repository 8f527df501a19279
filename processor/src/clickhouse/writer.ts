// The one insert path: a batch of rows into one table, ALWAYS with a deduplication token,
// through the client's row store (row-store.ts: chDB's Native block or JSONEachRow, a
// server's JSONEachRow over HTTP), classified when it fails; insertBatch retries with backoff
// when the failure is worth retrying.
//
// Exactly-once comes from the token: the caller builds it from the Kafka coordinates of the
// batch (table:topic:partition:firstOffset-lastOffset), so a batch rebuilt after a crash or a
// rebalance carries the same token and ClickHouse drops the repeat (in the table and in the
// materialized-view targets). An insert without a token is never made: with a dedup window
// on, ClickHouse would hash the content instead, and two legitimately identical batches
// would collapse into one.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import { ConfigError, KtrailError, PoisonError, TransientError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { EventColumns } from '../event-columns.js';
import { dateTime64, flatRow } from '../rows.js';
import type { ColumnTypes } from './native-format.js';
import { rowStoreOf } from './row-store.js';

const log = createLogger('processor.clickhouse.writer');

export type RetryPolicy = {
  /** Attempts in total (first try included); Infinity retries until success or abort. */
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
};

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 10, initialDelayMs: 200, maxDelayMs: 10_000 };

export type InsertBatchParams = {
  /** Table name; qualified with the client's database when it has no `db.` prefix. */
  table: string;
  /**
   * Row objects keyed by column name (a Native block on chDB when every column type allows,
   * else JSONEachRow: bigint values become JSON strings, so they keep full precision).
   */
  rows: readonly object[] | EventColumns;
  /** `table:topic:partition:firstOffset-lastOffset`, built by the caller. Required. */
  dedupToken: string;
  /**
   * May go in one statement with other inserts into the table (insert-combiner.ts): only
   * when a retry of it checks which rows landed, or a repeat of its rows is harmless.
   */
  shareable?: boolean;
};

export type InsertBatchOptions = {
  retry?: Partial<RetryPolicy>;
  /** Aborts the waiting between attempts (shutdown, partition revoked). */
  signal?: AbortSignal;
};

/** format: how the rows were sent (Native for chDB event tables, see native-format.ts). */
export type InsertResult = { rows: number; attempts: number; format: 'Native' | 'JSONEachRow' };

/**
 * One attempt at inserting one batch: resolves once ClickHouse has it, throws a classified
 * KtrailError otherwise (TransientError when worth retrying). The processor's row store calls
 * this under its own retry loop (processor/src/table-insert.ts), which checks between
 * attempts that the partition is still owned; insertBatch below is the loop for the rest.
 */
export async function insertOnce(client: ClickHouseClient, params: InsertBatchParams): Promise<InsertResult> {
  if (typeof params.dedupToken !== 'string' || params.dedupToken === '') {
    throw new ConfigError(`insertBatch into ${params.table}: a deduplication token is required`);
  }
  return rowStoreOf(client).insert(params);
}

/**
 * Inserts one batch, retried with backoff while the failure is worth retrying; resolves
 * once ClickHouse has it, throws a classified KtrailError otherwise.
 */
export async function insertBatch(
  client: ClickHouseClient,
  params: InsertBatchParams,
  options: InsertBatchOptions = {},
): Promise<InsertResult> {
  const policy = { ...DEFAULT_RETRY, ...options.retry };
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await insertOnce(client, params);
      if (attempt > 1)
        log.info(
          { table: params.table, token: params.dedupToken, attempt },
          'insert succeeded after retries',
        );
      return { ...result, attempts: result.attempts === 0 ? 0 : attempt };
    } catch (err) {
      const classified =
        err instanceof KtrailError ? err : classifyClickHouseError(err, { table: params.table });
      // Which attempt failed, for the log and the caller (insertOnce does not know).
      classified.context.attempt = attempt;
      if (!classified.retriable || attempt >= policy.maxAttempts || options.signal?.aborted) throw classified;
      const delay = backoff(attempt, policy);
      log.warn(
        { table: params.table, token: params.dedupToken, attempt, delayMs: delay, err: classified.message },
        'insert failed, retrying',
      );
      await sleep(delay, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(
        () => {
          throw classified;
        },
      );
    }
  }
}

const tableColumns = new WeakMap<ClickHouseClient, Map<string, Promise<ColumnTypes>>>();

/**
 * A table's column types, asked once per client and table (migrations run before the
 * writer; a column added later is missing here, and its rows fall back to JSONEachRow).
 */
export function columnTypes(client: ClickHouseClient, table: string): Promise<ColumnTypes> {
  let byTable = tableColumns.get(client);
  if (byTable === undefined) {
    byTable = new Map();
    tableColumns.set(client, byTable);
  }
  let types = byTable.get(table);
  if (types === undefined) {
    const [database, name] = table.split('.');
    types = client
      .query({
        query:
          'SELECT name, type FROM system.columns WHERE database = {database:String} AND table = {name:String}',
        query_params: { database, name },
        format: 'JSONEachRow',
      })
      .then((rs) => rs.json<{ name: string; type: string }>())
      .then((rows) => new Map(rows.map((r) => [r.name, r.type])));
    // A failed lookup is asked again next time, not cached.
    const cache = byTable;
    types.catch(() => cache.delete(table));
    byTable.set(table, types);
  }
  return types;
}

/** Full jitter between half and all of an exponentially growing, capped delay. */
function backoff(attempt: number, policy: RetryPolicy): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * The column event rows carry as bigint ns (event-columns.ts views): in JSON, DateTime64(9) is
 * "seconds.nanoseconds" text (the engine would read a bare integer as seconds).
 */
const TIME_COLUMN = 'time';

/** The row as JSON holds it: its columns as one object, a bigint `time` as its DateTime64 text. */
function withTimeText(row: object): object {
  const flat = flatRow(row);
  const time = flat[TIME_COLUMN];
  return typeof time === 'bigint' ? { ...flat, [TIME_COLUMN]: dateTime64(time) } : flat;
}

/**
 * Rows -> JSONEachRow text; bigint -> decimal string (ClickHouse parses it into UInt64/Int64),
 * a bigint `time` -> DateTime64 text. Plain JSON.stringify while it works (rows whose u64 are
 * already strings skip the replacer's per-key call); the first row holding another bigint
 * switches the rest of the batch to the replacer, so a batch pays for at most one failed
 * attempt.
 */
export function toJsonEachRow(table: readonly object[] | EventColumns): string {
  const rows = table instanceof EventColumns ? table.views() : table;
  const lines = new Array<string>(rows.length);
  let replacer: typeof bigintAsString | undefined;
  for (let i = 0; i < rows.length; i++) {
    const row = withTimeText(rows[i] as object);
    if (replacer === undefined) {
      try {
        lines[i] = JSON.stringify(row);
        continue;
      } catch {
        replacer = bigintAsString;
      }
    }
    lines[i] = JSON.stringify(row, replacer);
  }
  return lines.join('\n');
}

// ClickHouse error codes (src/Common/ErrorCodes.cpp) worth retrying: the server is busy,
// restarting, short of memory, or the network broke. Anything else with a code is a fault of
// the request (data, table, setting, permissions) and retrying cannot fix it.
const RETRIABLE_CODES = new Set([
  3, // UNEXPECTED_END_OF_FILE (connection cut mid-request)
  159, // TIMEOUT_EXCEEDED
  164, // READONLY (replica temporarily read-only)
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED (server shutting down)
  425, // SYSTEM_ERROR
  473, // DEADLOCK_AVOIDED
  999, // KEEPER_EXCEPTION
  1000, // POCO_EXCEPTION
]);

// Codes that mean the rows themselves are bad: the batch goes to the dead-letter path.
const BAD_DATA_CODES = new Set([
  6, // CANNOT_PARSE_TEXT
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  32, // ATTEMPT_TO_READ_AFTER_EOF
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  131, // TOO_LARGE_STRING_SIZE
  190, // SIZES_OF_ARRAYS_DONT_MATCH
  321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
  349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
  469, // VIOLATED_CONSTRAINT (e.g. an event row without its wall-clock time)
  691, // UNKNOWN_ELEMENT_OF_ENUM
]);

// Node socket errors: the server is down, restarting or unreachable for now.
const RETRIABLE_NET = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

/** The ClickHouse error code of an error from @clickhouse/client or chDB (old servers included). */
export function clickHouseCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; message?: unknown; clickhouseCode?: unknown };
  // chdb's native errors carry it as clickhouseCode (their `code` is e.g. 'CHDB_INSERT').
  if (typeof e?.clickhouseCode === 'number') return e.clickhouseCode;
  if (typeof e?.code === 'string' && /^\d+$/.test(e.code)) return Number(e.code);
  if (typeof e?.code === 'number') return e.code;
  // 18.x servers say "Code: 60, e.displayText() = ...", which the client does not parse.
  const m = typeof e?.message === 'string' ? /Code: (\d+)[.,]/.exec(e.message) : null;
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/**
 * Retriable -> TransientError; bad rows -> PoisonError; anything else with a ClickHouse code
 * (unknown table, unknown setting, syntax, auth) -> KtrailError(retriable: false), which
 * needs a person, not the dead-letter path. Without a code: socket errors and timeouts are
 * transient, anything else is a non-retriable client error.
 */
export function classifyClickHouseError(err: unknown, context: Record<string, unknown> = {}): KtrailError {
  if (err instanceof KtrailError) return err;
  const message = String((err as Error)?.message ?? err).split('\n')[0] ?? '';
  const code = clickHouseCode(err);
  const ctx = { ...context, clickhouseCode: code };
  if (code !== undefined) {
    if (RETRIABLE_CODES.has(code))
      return new TransientError(`ClickHouse: ${message}`, { cause: err, context: ctx });
    if (BAD_DATA_CODES.has(code))
      return new PoisonError(`ClickHouse rejected the rows: ${message}`, { cause: err, context: ctx });
    return new KtrailError(`ClickHouse: ${message}`, { retriable: false, cause: err, context: ctx });
  }
  const netCode = (err as { code?: unknown })?.code;
  if (typeof netCode === 'string' && RETRIABLE_NET.has(netCode)) {
    return new TransientError(`ClickHouse unreachable: ${message}`, {
      cause: err,
      context: { ...ctx, netCode },
    });
  }
  if (/socket hang up|timeout|ECONNRESET|closed/i.test(message)) {
    return new TransientError(`ClickHouse transport: ${message}`, { cause: err, context: ctx });
  }
  if (err instanceof TypeError && /BigInt|JSON/i.test(message)) {
    return new PoisonError(`rows cannot be serialized: ${message}`, { cause: err, context: ctx });
  }
  // Anything else (a bug, a misuse of the client) would fail the same way again.
  return new KtrailError(`ClickHouse client: ${message}`, { retriable: false, cause: err, context: ctx });
}
