// A ClickHouse-compatible HTTP endpoint over the processor's own store. chDB allows one
// process per data directory, so while the pipeline runs, SQL has to go through the process
// that owns the store: this endpoint speaks enough of ClickHouse's HTTP interface (POST body
// or `?query=`, `param_*`, `default_format`, `/ping`, `X-ClickHouse-Exception-Code`) for curl,
// `./ktrail query`, the report and @clickhouse/client's URL mode.
//
// It is closed by default (docs/security.md): a bearer token from a 0600 file (or that token
// as the Basic-auth password), POST only, no browser requests (any Origin or Sec-Fetch-Site
// header is refused: a web page can't reach it), and every query is one SELECT, read-only by
// the engine (readonly = 1 forbids writes, DDL, SET and every table function that reaches
// files, URLs or other servers), within a time limit and a result-size limit (both fail the
// query with the engine's own error rather than answer in part).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import type { KtrailConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

export interface QueryEndpointOptions {
  client: ClickHouseClient;
  port: number;
  host?: string;
  /** The bearer token every request must carry (queryToken reads or creates it). */
  token: string;
  /** A query is stopped after this long (max_execution_time). */
  timeoutMs: number;
  /** A query whose result passes this size fails (max_result_bytes), rather than growing the process. */
  maxResultBytes: number;
  logger?: Logger;
}

export interface QueryEndpoint {
  port: number;
  close(): Promise<void>;
}

/** Where the token lives: processor.queryTokenFile, or `query-token` beside the chDB store. */
export function queryTokenFile(config: KtrailConfig): string {
  return resolve(
    config.processor.queryTokenFile ?? join(dirname(resolve(config.clickhouse.chdbPath)), 'query-token'),
  );
}

/**
 * How a local client reaches the running processor's endpoint: the URL (KTRAIL_QUERY_URL, or
 * loopback and processor.queryPort) and the token from its file. Throws when there is none yet.
 */
export function queryEndpointAccess(config: KtrailConfig): { url: string; token: string } {
  const file = queryTokenFile(config);
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(
      `no query token at ${file} (${(err as NodeJS.ErrnoException).code}): the processor creates it when it starts; is ./ktrail up running?`,
    );
  }
  return { url: process.env.KTRAIL_QUERY_URL ?? `http://127.0.0.1:${config.processor.queryPort}/`, token };
}

/**
 * The endpoint's token: read from `file`, or created there (32 random bytes, hex, mode 0600)
 * when it does not exist. A file that others can read is refused: the token is a password.
 */
export function queryToken(file: string): string {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    try {
      writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process won the race
    }
    chmodSync(file, 0o600); // whatever the umask
  }
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0)
    throw new ConfigError(
      `processor.queryTokenFile: ${file} is readable by others (mode ${mode.toString(8)}): chmod 600 it`,
    );
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16)
    throw new ConfigError(`processor.queryTokenFile: ${file} holds no token of 16+ characters`);
  return token;
}

/** Why a request or a query is refused, as ClickHouse would say it (code, HTTP status). */
class Refusal extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: number,
  ) {
    super(message);
  }
}

const FORMAT_AT_END = /\s+FORMAT\s+([A-Za-z][A-Za-z0-9]*)$/;
/** A trailing, top-level SETTINGS clause of `name = number` pairs. */
const SETTINGS_AT_END = /\s+SETTINGS\s+((?:[a-z_]+ = \d+)(?:, [a-z_]+ = \d+)*)$/;
/** Settings a query may set for itself: they shape its answer, not its reach or its limits. */
const QUERY_SETTINGS = new Set(['join_use_nulls']);

/**
 * The one read statement to run, from the engine's own parser (formatQuerySingleLine refuses
 * several statements): its normalised text without a trailing FORMAT, that format, and
 * the query's own trailing settings when they are in QUERY_SETTINGS. Refuses what readonly
 * does not cover: INTO OUTFILE, and any other SETTINGS (a subquery's own `SETTINGS readonly =
 * 0` would lift the limit). Keywords inside string literals are refused too, which errs on
 * the safe side.
 */
async function parseReadQuery(
  client: ClickHouseClient,
  sql: string,
): Promise<{ text: string; format?: string; settings: string }> {
  let normalized: string;
  try {
    const rs = await client.query({
      query: 'SELECT formatQuerySingleLine({q:String}) AS q',
      query_params: { q: sql },
      format: 'JSONEachRow',
    });
    normalized = ((await rs.json<{ q: string }>())[0]?.q ?? '').trim();
  } catch (err) {
    throw new Refusal(String((err as Error).message).split('\n')[0] ?? 'syntax error', 400, 62);
  }
  if (!/^(SELECT|WITH)\b/i.test(normalized))
    throw new Refusal('only a single SELECT (or WITH ... SELECT) is allowed here (READONLY)', 403, 164);
  if (/\bINTO\s+OUTFILE\b/i.test(normalized))
    throw new Refusal('INTO OUTFILE is not allowed here (READONLY)', 403, 164);
  let format: string | undefined;
  const f = FORMAT_AT_END.exec(normalized);
  if (f !== null) {
    normalized = normalized.slice(0, f.index);
    format = f[1] as string;
  }
  let settings = '';
  const s = SETTINGS_AT_END.exec(normalized);
  if (
    s !== null &&
    (s[1] as string).split(', ').every((pair) => QUERY_SETTINGS.has(pair.split(' = ')[0] as string))
  ) {
    normalized = normalized.slice(0, s.index);
    settings = `${s[1]}, `;
  }
  if (/\bSETTINGS\b/i.test(normalized))
    throw new Refusal(
      `SETTINGS are not allowed in queries here, except a final ${[...QUERY_SETTINGS].join(', ')} (READONLY)`,
      403,
      164,
    );
  return { text: normalized, settings, ...(format === undefined ? {} : { format }) };
}

export async function startQueryEndpoint(options: QueryEndpointOptions): Promise<QueryEndpoint> {
  const { client, logger } = options;
  const expected = Buffer.from(options.token);
  const limits =
    `max_execution_time = ${Math.max(1, Math.ceil(options.timeoutMs / 1000))}, ` +
    `max_result_bytes = ${options.maxResultBytes}, result_overflow_mode = 'throw', readonly = 1`;

  function authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    let given = '';
    if (header.startsWith('Bearer ')) given = header.slice(7).trim();
    else if (header.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString();
      given = decoded.slice(decoded.indexOf(':') + 1); // the token is the password; any user
    } else given = String(req.headers['x-clickhouse-key'] ?? '');
    const candidate = Buffer.from(given);
    return candidate.length === expected.length && timingSafeEqual(candidate, expected);
  }

  async function handle(
    req: IncomingMessage,
  ): Promise<{ status: number; body: string | Buffer; headers: Record<string, string> }> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/ping' && req.method === 'GET')
      return { status: 200, body: 'Ok.\n', headers: { 'content-type': 'text/plain' } };
    if (url.pathname !== '/') throw new Refusal('not found', 404, 0);
    // A browser names the page's origin; nothing a page sends may reach the store.
    if (req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined)
      throw new Refusal('requests from web pages are refused', 403, 497);
    if (req.method !== 'POST') throw new Refusal('POST only', 405, 0);
    if (!authorized(req))
      throw new Refusal('a valid token is required (Authorization: Bearer <token>)', 401, 516);
    const body = await readBody(req, 1024 * 1024);
    // Like ClickHouse: the query parameter, then the body, joined by a newline.
    const sql = [url.searchParams.get('query'), body]
      .filter((part) => part?.trim())
      .join('\n')
      .trim();
    if (!sql) throw new Refusal('Empty query', 400, 0);
    const parsed = await parseReadQuery(client, sql);
    const format = parsed.format ?? url.searchParams.get('default_format') ?? 'TabSeparated';
    if (!/^[A-Za-z][A-Za-z0-9]*$/.test(format)) throw new Refusal(`unknown format ${format}`, 400, 73);
    // ClickHouse's HTTP query parameters: ?param_from=... binds {from:DateTime}.
    const params: Record<string, string> = {};
    for (const [key, value] of url.searchParams) if (key.startsWith('param_')) params[key.slice(6)] = value;
    const result = await client.exec({
      // The query's own settings first: readonly = 1 must come last (then nothing can change).
      query: `${parsed.text}\nSETTINGS ${parsed.settings}${limits}\nFORMAT ${format}`,
      query_params: params,
    });
    const chunks: Buffer[] = [];
    for await (const chunk of result.stream) chunks.push(Buffer.from(chunk as Uint8Array));
    return {
      status: 200,
      body: Buffer.concat(chunks),
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    };
  }

  const server: Server = createServer((req, res) => {
    void handle(req).then(
      ({ status, body, headers }) => {
        res.writeHead(status, headers);
        res.end(body);
      },
      (err: Error) => {
        const refusal =
          err instanceof Refusal
            ? err
            : new Refusal(String(err.message).split('\n')[0] ?? 'error', 500, code(err));
        if (refusal.status === 401 || refusal.status === 403)
          logger?.warn(
            { status: refusal.status, reason: refusal.message },
            'query endpoint refused a request',
          );
        res.writeHead(refusal.status, {
          'content-type': 'text/plain',
          ...(refusal.code > 0 ? { 'x-clickhouse-exception-code': String(refusal.code) } : {}),
        });
        res.end(`Code: ${refusal.code}. DB::Exception: ${refusal.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  logger?.info({ port, host: options.host ?? '127.0.0.1' }, 'query endpoint listening (token required)');
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The ClickHouse code of an engine error, when it has one. */
function code(err: unknown): number {
  const e = err as { clickhouseCode?: unknown; code?: unknown };
  if (typeof e.clickhouseCode === 'number') return e.clickhouseCode;
  if (typeof e.code === 'string' && /^\d+$/.test(e.code)) return Number(e.code);
  return 0;
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new Refusal(`query text over ${maxBytes} bytes`, 413, 0);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
