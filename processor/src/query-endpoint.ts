// A ClickHouse-compatible HTTP endpoint over the processor's own store. chDB allows one
// process per data directory, so while the pipeline runs, SQL has to go through the process
// that owns the store: this endpoint speaks enough of ClickHouse's HTTP interface
// (`?query=`, body, `param_*`, `default_format`, `/ping`, `X-ClickHouse-Exception-Code`) for curl,
// `./ktrail query`, Grafana-style HTTP clients and @clickhouse/client's URL mode.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../../common/log.js';

export interface QueryEndpointOptions {
  client: ClickHouseClient;
  port: number;
  host?: string;
  /** Refuse statements other than SELECT/SHOW/DESCRIBE/EXPLAIN/WITH/EXISTS. */
  readOnly?: boolean;
  logger?: Logger;
}

export interface QueryEndpoint {
  port: number;
  close(): Promise<void>;
}

const FORMAT_CLAUSE = /\bFORMAT\s+[A-Za-z]+\s*;?\s*$/i;
// Read statements are also the ones that return rows (and get the default format).
const READ_STATEMENT = /^\s*(\(\s*)*(SELECT|SHOW|DESC|DESCRIBE|EXPLAIN|WITH|EXISTS)\b/i;

export async function startQueryEndpoint(options: QueryEndpointOptions): Promise<QueryEndpoint> {
  const { client, readOnly = false, logger } = options;
  const server: Server = createServer((req, res) => {
    void handle(req).then(
      ({ status, body, headers }) => {
        res.writeHead(status, headers);
        res.end(body);
      },
      (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`${err.message}\n`);
      },
    );
  });

  async function handle(
    req: IncomingMessage,
  ): Promise<{ status: number; body: string | Buffer; headers: Record<string, string> }> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/ping')
      return { status: 200, body: 'Ok.\n', headers: { 'content-type': 'text/plain' } };
    if (url.pathname !== '/') return { status: 404, body: 'not found\n', headers: {} };
    const body = await readBody(req);
    // Like ClickHouse: the query parameter, then the body, joined by a newline.
    const sql = [url.searchParams.get('query'), body]
      .filter((part) => part?.trim())
      .join('\n')
      .trim();
    if (!sql) return { status: 400, body: 'Empty query\n', headers: { 'content-type': 'text/plain' } };
    if (readOnly && !READ_STATEMENT.test(sql))
      return {
        status: 403,
        body: 'Code: 164. DB::Exception: ktrail query endpoint is read-only. (READONLY)\n',
        headers: { 'x-clickhouse-exception-code': '164', 'content-type': 'text/plain' },
      };
    const format = url.searchParams.get('default_format') ?? 'TabSeparated';
    const statement = READ_STATEMENT.test(sql) && !FORMAT_CLAUSE.test(sql) ? `${sql}\nFORMAT ${format}` : sql;
    try {
      // Like a ClickHouse server's defaults: 64-bit integers quoted in JSON so no client loses precision.
      // ClickHouse's HTTP query parameters: ?param_from=... binds {from:DateTime}.
      const params: Record<string, string> = {};
      for (const [key, value] of url.searchParams) if (key.startsWith('param_')) params[key.slice(6)] = value;
      const result = await client.exec({
        query: statement,
        query_params: params,
        clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
      });
      const chunks: Buffer[] = [];
      for await (const chunk of result.stream) chunks.push(Buffer.from(chunk as Uint8Array));
      return {
        status: 200,
        body: Buffer.concat(chunks),
        headers: { 'content-type': 'text/plain; charset=UTF-8' },
      };
    } catch (err) {
      const error = err as Error & { code?: string };
      logger?.debug({ err: error.message }, 'query failed');
      return {
        status: 500,
        body: `${error.message}\n`,
        headers: { 'x-clickhouse-exception-code': String(error.code ?? '0'), 'content-type': 'text/plain' },
      };
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  logger?.info(
    { url: `http://${options.host ?? '127.0.0.1'}:${port}/` },
    'ClickHouse-compatible query endpoint',
  );
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
