// One factory for every ClickHouse ktrail talks to: the embedded chDB engine (default) or a
// ClickHouse server by URL. Both come back as the same @clickhouse/client instance, so the
// writer and the migrations never care which one they got.
import { mkdirSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type ClickHouseClient,
  type ClickHouseClientConfigOptions,
  ClickHouseLogLevel,
  type ClickHouseSettings,
  createClient,
} from '@clickhouse/client';
import type { createChdbConnection } from 'chdb/connection';
import { ConfigError, KtrailError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { type PageOutResult, pageOutMappedFile } from '../../../common/mapped-pages.js';
import { readSettingFile, redactUrl, type Secret } from '../../../common/secret.js';
import { explainTlsError } from '../../../common/tls.js';
import { isPlainIdentifier } from './identifier.js';

const log = createLogger('processor.clickhouse');

export type ChdbConfig = {
  kind: 'chdb';
  /**
   * Data directory. libchdb binds ONE directory per process, and a second process opening
   * the same directory fails on its lock: while the pipeline runs, SQL against the store
   * must go through the process that owns it.
   */
  path: string;
  database: string;
};

export type ServerConfig = {
  kind: 'server';
  url: string;
  database: string;
  username?: string;
  password?: string;
  /** PEM files: caFile for a private CA; certFile+keyFile together for mutual TLS. */
  tls?: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined };
  requestTimeoutMs?: number;
  /**
   * Old servers (before 21.x) lack insert_deduplication_token: without it retries can
   * duplicate rows. Refused unless this is set (only the HTTP-transport tests do).
   */
  allowWithoutDedupToken?: boolean;
};

export type ClickHouseConfig = ChdbConfig | ServerConfig;

/** What the factory learnt about the backend; the writer reads it through describeClickHouse. */
export type ClickHouseInfo = {
  kind: 'chdb' | 'server';
  database: string;
  version: string;
  /** The server knows insert_deduplication_token (the writer sends one with every insert). */
  dedupToken: boolean;
  /**
   * chDB only: its native insert (payload handed over zero-copy, parsed by the engine's
   * parallel parser, settings scoped to the one INSERT). Faster than the generic path.
   */
  rawInsert?: (params: {
    table: string;
    values: Buffer | string;
    format: 'JSONEachRow';
    settings: Record<string, string | number>;
  }) => Promise<unknown>;
  /**
   * chDB only: inserts one Native block (native-format.ts). chdb-node's inline insert takes
   * text formats only, so the block goes through a spool file in the store's directory and
   * `INSERT ... SELECT FROM file(..., Native)`, with the settings on the statement itself.
   */
  insertNative?: (params: {
    table: string;
    columns: readonly string[];
    block: Buffer;
    settings: Record<string, string | number>;
  }) => Promise<void>;
};

type ChdbAsClientConnection = NonNullable<ClickHouseClientConfigOptions['connection']>;

const infos = new WeakMap<ClickHouseClient, ClickHouseInfo>();

export function describeClickHouse(client: ClickHouseClient): ClickHouseInfo | undefined {
  return infos.get(client);
}

// Settings sent with every statement. WHY each one:
// - output_format_json_quote_64bit_integers: UInt64 (cgroup ids, ns timestamps) come back as
//   JSON strings; chDB's default is 0, which turns them into lossy doubles.
// - date_time_input_format best_effort: DateTime64 columns accept ISO strings and epoch ns.
// - async_insert 0: chDB 26.x defaults to 1; the processor commits Kafka offsets after an
//   insert returns, so the insert must be synchronous and visible when it does.
// - session_timezone UTC: times read back do not depend on the host's zone.
// - input_format_skip_unknown_fields 0: a row field with no column is an error, not silently
//   dropped data (chDB 26.x defaults to skipping): contract drift shows at the first insert.
// - insert_deduplication_token '' (chDB only): chDB applies settings with SET on a long-lived
//   session, so a token would otherwise stick to the NEXT insert and silently drop it as a
//   duplicate. Asking for '' on every statement makes tokens per insert, as over HTTP (the
//   SET is sent when the session holds another value: settingsOncePerSession).
const WANTED_SETTINGS: ClickHouseSettings = {
  output_format_json_quote_64bit_integers: 1,
  date_time_input_format: 'best_effort',
  async_insert: 0,
  session_timezone: 'UTC',
  input_format_skip_unknown_fields: 0,
};

// Servers only. With a cluster (clickhouse.cluster) inserts go to Distributed tables: written
// to the shards before the INSERT returns (offsets are committed after it), not queued on the
// receiving node. Both names: the setting was renamed in 23.x; the server keeps the one it knows.
const SERVER_SETTINGS: ClickHouseSettings = {
  distributed_foreground_insert: 1,
  insert_distributed_sync: 1,
};

/** Creates the client and the database. Async because it checks what the backend supports. */
export async function createClickHouse(config: ClickHouseConfig): Promise<ClickHouseClient> {
  if (!isPlainIdentifier(config.database)) {
    throw new ConfigError(
      `clickhouse.database must be a plain identifier, got ${JSON.stringify(config.database)}`,
    );
  }
  return config.kind === 'chdb' ? createChdb(config) : createServer(config);
}

async function createChdb(config: ChdbConfig): Promise<ClickHouseClient> {
  if (config.path === '' || config.path === ':memory:') {
    throw new ConfigError(
      'clickhouse.path must be a data directory (the embedded store must survive restarts)',
    );
  }
  const path = resolve(config.path);
  // Loaded only when used: libchdb.so is ~140 MiB of pages a processor writing to a server
  // would otherwise map and touch at start (RSS).
  const [{ Session }, { createChdbConnection }] = await Promise.all([
    import('chdb'),
    import('chdb/connection'),
  ]);
  let client: ClickHouseClient;
  let connection: ReturnType<typeof createChdbConnection>;
  try {
    mkdirSync(path, { recursive: true });
    // chdb's connection passes no engine arguments: this session starts the engine with
    // them, and the connection opened next on the same directory shares that engine.
    const engine = new Session(path, { connectionArgs: [...ENGINE_ARGS] });
    try {
      connection = closingAlso(
        oneStatementAtATime(settingsOncePerSession(createChdbConnection({ path }))),
        () => engine.close(),
      );
    } catch (err) {
      engine.close();
      throw err;
    }
    client = createClient({
      // chdb types the connection against its own copy of @clickhouse/client-common; the
      // shapes match at runtime, the two declaration copies just don't unify.
      connection: connection as unknown as ChdbAsClientConnection,
      clickhouse_settings: { ...WANTED_SETTINGS, insert_deduplication_token: '' },
    });
  } catch (err) {
    throw new ConfigError(
      `cannot open chDB store at ${path}: ${(err as Error).message} ` +
        '(one data directory per process; is another process using it?)',
      { cause: err },
    );
  }
  // chDB ignores the client's `database` option: every statement names its database.
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${config.database}` });
  const version = await selectOne(client, 'SELECT version() AS v');
  const chdb = connection.chdb;
  // Same filesystem as the store, always writable by us; files live for one insert.
  const spool = join(path, 'insert-spool');
  rmSync(spool, { recursive: true, force: true }); // leftovers of a crash mid-insert
  mkdirSync(spool, { recursive: true });
  let spooled = 0;
  infos.set(client, {
    kind: 'chdb',
    database: config.database,
    version,
    dedupToken: true,
    rawInsert: (params) => chdb.rawInsert(params),
    insertNative: async ({ table, columns, block, settings }) => {
      for (const name of [...columns, ...Object.keys(settings)]) {
        if (!isPlainIdentifier(name)) throw new Error(`not a plain identifier: ${JSON.stringify(name)}`);
      }
      const file = join(spool, `${process.pid}-${spooled++}.native`);
      const list = columns.join(', ');
      const set = Object.entries(settings)
        .map(([k, v]) => `${k} = ${typeof v === 'number' ? v : sqlString(v)}`)
        .join(', ');
      await writeFile(file, block);
      try {
        await client.command({
          query: `INSERT INTO ${table} (${list}) SETTINGS ${set} SELECT ${list} FROM file(${sqlString(file)}, Native)`,
        });
      } finally {
        await rm(file, { force: true });
      }
    },
  });
  log.info({ path, database: config.database, version }, 'chDB store open');
  return client;
}

/**
 * Server configuration of the embedded engine, given as it starts. Its idle background
 * work is a processor's floor at a trickle, so it wakes less when there is nothing to do:
 * each MergeTree table's merge and streaming assignees, idle, poll every second (the
 * engine's default is 100 ms, growing 1.1x); an insert still wakes them at once, so merges
 * follow inserts. The memory worker reads the process's RSS every 500 ms (default 100 ms).
 */
export const ENGINE_ARGS = [
  '--background_processing_pool_thread_sleep_seconds_if_nothing_to_do=1',
  '--background_streaming_processing_pool_thread_sleep_seconds_if_nothing_to_do=1',
  '--memory_worker_period_ms=500',
] as const;

/** The connection, whose close() then also runs `after` (once the connection is closed). */
function closingAlso<C extends ReturnType<typeof createChdbConnection>>(conn: C, after: () => void): C {
  return wrapMethods(conn, ['close'], (close) => async (...args) => {
    try {
      return await close(...args);
    } finally {
      after();
    }
  });
}

/** The embedded engine's library (chdb's @chdb/lib-* package). */
export const ENGINE_LIBRARY = 'libchdb.so';

/**
 * Once the embedded store is open and migrated, the engine's pages that only its startup ran
 * go back to the kernel: ClickHouse's static initialisers and DDL leave ~180 MiB of
 * libchdb.so resident, of which inserts and queries use about a third, and the rest would
 * count in the process's memory (RSS, and a pod's charge) until the kernel is short
 * (docs/processor.md, memory budget). Pages still used fault back in from the file. A server store: nothing to do.
 * Where the kernel refuses (before Linux 5.4), the process runs on with the pages kept.
 */
export function releaseEngineStartupPages(client: ClickHouseClient): PageOutResult | undefined {
  if (describeClickHouse(client)?.kind !== 'chdb') return undefined;
  try {
    const result = pageOutMappedFile(ENGINE_LIBRARY);
    log.info(
      {
        mappings: result.mappings,
        residentMiB: [result.residentBefore, result.residentAfter].map((b) => Math.round(b / 2 ** 20)),
      },
      'engine startup pages handed back to the kernel',
    );
    return result;
  } catch (err) {
    log.warn({ err }, 'engine startup pages kept: the kernel refused MADV_PAGEOUT');
    return undefined;
  }
}

/**
 * chdb turns a statement's settings into SET statements run before it on the session, and
 * the session keeps them: the client's constant settings were set again before every
 * statement, ~2-3 ms of CPU each time (six SETs cost about half a `SELECT 1`). Here a setting
 * is sent only when the session does not hold that value yet. After a failed statement the
 * session's state is not known (its SETs may have run): everything is sent again. Statements
 * must not overlap (oneStatementAtATime wraps this).
 */
export function settingsOncePerSession<C extends ReturnType<typeof createChdbConnection>>(conn: C): C {
  const held = new Map<string, unknown>();
  return wrapMethods(conn, STATEMENT_METHODS, (method) => async (...args) => {
    const params = args[0] as { clickhouse_settings?: Record<string, unknown> };
    const send: Record<string, unknown> = {};
    const sessionSettings: Array<[string, unknown]> = [];
    for (const [key, value] of Object.entries(params.clickhouse_settings ?? {})) {
      if (value === undefined) continue;
      // default_format is a per-call option of chdb's, not a session setting: always sent.
      if (key === 'default_format') send[key] = value;
      else if (!Object.is(held.get(key), value)) {
        send[key] = value;
        sessionSettings.push([key, value]);
      }
    }
    try {
      const result = await method({ ...params, clickhouse_settings: send });
      for (const [key, value] of sessionSettings) held.set(key, value);
      return result;
    } catch (err) {
      held.clear();
      throw err;
    }
  });
}

/** The connection's methods that run a statement. */
const STATEMENT_METHODS = ['query', 'exec', 'command', 'insert'];

type AsyncMethod = (...args: unknown[]) => Promise<unknown>;

/**
 * A proxy of `target` whose methods named in `names` go through `wrap`. Everything is read
 * with the target itself as `this`, getters included: chdb's classes keep private fields.
 */
function wrapMethods<T extends object>(
  target: T,
  names: readonly string[],
  wrap: (method: AsyncMethod) => AsyncMethod,
): T {
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop, t);
      if (typeof value !== 'function') return value;
      const bound = value.bind(t) as AsyncMethod;
      return names.includes(String(prop)) ? wrap(bound) : bound;
    },
  });
}

/**
 * chDB hands a failed SELECT's partial output to the NEXT statement as its result (chdb 3.4,
 * engine 26.7: after "Timeout exceeded" or a throwIf mid-scan, a following `SELECT 1` got
 * megabytes of the failed query's rows). So every statement of the store goes through one
 * queue, and a failed one is followed by a throwaway statement that takes the leftovers
 * before the next statement runs. The engine runs one statement at a time per session anyway.
 */
function oneStatementAtATime<C extends ReturnType<typeof createChdbConnection>>(conn: C): C {
  let tail: Promise<unknown> = Promise.resolve();
  const queued = <T>(run: () => Promise<T>): Promise<T> => {
    const result = tail.then(async () => {
      try {
        return await run();
      } catch (err) {
        await conn.query({ query: 'SELECT 1', query_id: 'ktrail-drain' } as never).catch(() => undefined);
        throw err;
      }
    });
    tail = result.catch(() => undefined);
    return result;
  };
  const guard = <T extends object>(target: T, queuedMethods: readonly string[]): T =>
    wrapMethods(
      target,
      queuedMethods,
      (method) =>
        (...args) =>
          queued(() => method(...args)),
    );
  const guardedChdb = guard(conn.chdb, ['rawInsert']);
  const guarded = guard(conn, STATEMENT_METHODS);
  return new Proxy(guarded, {
    get: (t, prop) => (prop === 'chdb' ? guardedChdb : Reflect.get(t, prop)),
  });
}

async function createServer(config: ServerConfig): Promise<ClickHouseClient> {
  const base = {
    url: config.url,
    username: config.username ?? 'default',
    password: config.password ?? '',
    request_timeout: config.requestTimeoutMs ?? 60_000,
    // The writer logs failures once, classified, through pino; the client's own console
    // logger would print a stack per failed attempt.
    log: { level: ClickHouseLogLevel.OFF },
    ...(config.tls === undefined || Object.values(config.tls).every((v) => v === undefined)
      ? {}
      : { tls: readTls(config.tls) }),
  };
  // The database may not exist yet, and a URL naming a missing database fails every request:
  // create it through a client on `default`, and learn which settings this server knows.
  const bootstrap = createClient({ ...base, database: 'default' });
  let known: Set<string>;
  let version: string;
  try {
    await bootstrap
      .command({ query: `CREATE DATABASE IF NOT EXISTS ${config.database}` })
      .catch((err: unknown) => {
        throw explainServerError(err, config);
      });
    version = await selectOne(bootstrap, 'SELECT version() AS v');
    const names = [
      ...Object.keys(WANTED_SETTINGS),
      ...Object.keys(SERVER_SETTINGS),
      'insert_deduplication_token',
    ];
    // Inlined, not bound: query parameters arrived in 19.x, and old servers must answer too.
    const rs = await bootstrap.query({
      query: `SELECT name FROM system.settings WHERE name IN (${names.map((n) => `'${n}'`).join(', ')})`,
      format: 'JSONEachRow',
    });
    known = new Set((await rs.json<{ name: string }>()).map((r) => r.name));
  } finally {
    await bootstrap.close();
  }
  const settings: ClickHouseSettings = {};
  for (const [name, value] of Object.entries({ ...WANTED_SETTINGS, ...SERVER_SETTINGS })) {
    if (known.has(name)) (settings as Record<string, unknown>)[name] = value;
  }
  const dedupToken = known.has('insert_deduplication_token');
  if (!dedupToken && config.allowWithoutDedupToken !== true) {
    throw new ConfigError(
      `ClickHouse ${version} at ${redactUrl(config.url)} lacks insert_deduplication_token: retried inserts ` +
        'could duplicate rows. Use ClickHouse 22.x or newer (or chDB).',
    );
  }
  const client = createClient({ ...base, database: config.database, clickhouse_settings: settings });
  infos.set(client, { kind: 'server', database: config.database, version, dedupToken });
  log.info(
    { url: redactUrl(config.url), database: config.database, version, dedupToken },
    'ClickHouse server',
  );
  return client;
}

/**
 * The first request's failure, when it is TLS or authentication, as an error that names the
 * server, the user and the setting to fix (never the password); other errors unchanged.
 */
function explainServerError(err: unknown, config: ServerConfig): unknown {
  const at = `ClickHouse ${redactUrl(config.url)}`;
  const tls = explainTlsError(err, at, 'clickhouse.tls', config.tls?.certFile !== undefined);
  if (tls !== undefined) return new KtrailError(tls, { cause: err });
  // 516 AUTHENTICATION_FAILED; 192/193/194 unknown user, wrong password, password required (old servers).
  // Old servers' errors lack the (TYPE) suffix @clickhouse/client parses a code from.
  const code = Number(
    (err as { code?: unknown }).code ?? /^Code: (\d+)/.exec(String((err as Error).message))?.[1],
  );
  if ([192, 193, 194, 516].includes(code))
    return new KtrailError(
      `${at}: authentication failed for user "${config.username ?? 'default'}" (${(err as Error).message.split('\n')[0]}): ` +
        'check clickhouse.username and the password (clickhouse.password or clickhouse.passwordFile)',
      { cause: err, context: { clickhouseCode: code } },
    );
  return err;
}

function readTls(tls: NonNullable<ServerConfig['tls']>) {
  const read = (what: string, path: string): Buffer => readSettingFile(`clickhouse.tls.${what}`, path);
  // @clickhouse/client takes a client certificate only together with the CA: it would drop a
  // certFile/keyFile without caFile silently, so that is an error naming the setting.
  if (tls.caFile === undefined) {
    throw new ConfigError('clickhouse.tls.caFile: required with certFile/keyFile (the client needs the CA)');
  }
  const ca_cert = read('caFile', tls.caFile);
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new ConfigError('clickhouse.tls: certFile and keyFile go together (mutual TLS)');
  }
  if (tls.certFile !== undefined && tls.keyFile !== undefined) {
    return { ca_cert, cert: read('certFile', tls.certFile), key: read('keyFile', tls.keyFile) };
  }
  return { ca_cert };
}

/** The `clickhouse` section of the ktrail config (common/config.ts) as a factory config. */
export function clickHouseConfigFrom(section: {
  url?: string | undefined;
  chdbPath: string;
  database: string;
  username: string;
  password: Secret;
  tls?: ServerConfig['tls'] | undefined;
}): ClickHouseConfig {
  if (section.url === undefined) return { kind: 'chdb', path: section.chdbPath, database: section.database };
  return {
    kind: 'server',
    url: section.url,
    database: section.database,
    username: section.username,
    password: section.password.reveal(),
    ...(section.tls === undefined ? {} : { tls: section.tls }),
  };
}

/** A ClickHouse string literal. */
function sqlString(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

async function selectOne(client: ClickHouseClient, query: string): Promise<string> {
  const rs = await client.query({ query, format: 'JSONEachRow' });
  const rows = await rs.json<{ v: string }>();
  return String(rows[0]?.v ?? '');
}
