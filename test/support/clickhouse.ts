// ClickHouse for tests: the real embedded chDB engine, and Debian's clickhouse-server for the
// HTTP transport path.
//
// libchdb binds ONE data directory per process. Test files run in their own worker process,
// so each worker gets one fresh temp directory and every createTestChdb() call a fresh
// database in it: tests never see each other's tables.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { REPO_ROOT } from '../../common/repo-root.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { IDENTITY_COLUMNS } from '../../processor/src/workload.js';
import { freePorts } from './ports.js';
import { issueCert, makeCa } from './tls.js';

const run = promisify(execFile);

const SERVER_SCRIPT = join(REPO_ROOT, 'deploy/local/clickhouse-server.sh');

let workerDir: string | undefined;

/** This worker's chDB data directory (created on first use). */
export function chdbWorkerDir(): string {
  workerDir ??= mkdtempSync(join(tmpdir(), 'ktrail-chdb-'));
  return workerDir;
}

/** A database name no other test uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export type TestChdb = {
  client: ClickHouseClient;
  database: string;
  dir: string;
  /** SELECT -> rows (UInt64 as strings). */
  rows<T = Record<string, unknown>>(query: string): Promise<T[]>;
  close(): Promise<void>;
};

/** A chDB client on this worker's directory with a fresh, empty database. */
export async function createTestChdb(prefix = 't'): Promise<TestChdb> {
  const dir = chdbWorkerDir();
  const database = uniqueName(prefix);
  const client = await createClickHouse({ kind: 'chdb', path: dir, database });
  return {
    client,
    database,
    dir,
    rows: async <T>(query: string) => (await client.query({ query, format: 'JSONEachRow' })).json<T>(),
    close: async () => {
      await client.command({ query: `DROP DATABASE IF EXISTS ${database} SYNC` }).catch(() => undefined);
      await client.close();
    },
  };
}

/**
 * A fresh chDB store with the processor's schema in database `ktrail`, in a directory of its
 * own: what a processor under test writes to (one per test file: one directory per process).
 */
export async function createProcessorStore(tag: string): Promise<ClickHouseClient> {
  const client = await createClickHouse({
    kind: 'chdb',
    path: join(mkdtempSync(join(tmpdir(), `ktrail-${tag}-`)), 'chdb'),
    database: 'ktrail',
  });
  await migrate(client, {});
  return client;
}

/** The rows of a query, as objects (JSONEachRow). */
export async function queryRows<T>(ch: ClickHouseClient, sql: string): Promise<T[]> {
  const rs = await ch.query({ query: sql, format: 'JSONEachRow' });
  return rs.json<T>();
}

export type ServerEndpoint = {
  url: string;
  /** HTTPS with a throwaway CA (caFile) made by the script. */
  httpsUrl: string;
  caFile: string;
  /** A user with a password, besides `default`. */
  user: { username: string; password: string };
  startedHere: boolean;
};

async function answering(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Debian's clickhouse-server (18.16) on loopback, started through
 * deploy/local/clickhouse-server.sh when it is not answering. Throws with the reason when it
 * can't be had (itReal turns that into a skip, or a failure in CI).
 */
export async function ensureClickHouseServer(): Promise<ServerEndpoint> {
  const ask = async (what: string) => (await run('bash', [SERVER_SCRIPT, what])).stdout.trim();
  const url = await ask('url');
  const rest = {
    url,
    httpsUrl: await ask('https-url'),
    caFile: await ask('ca'),
    user: { username: 'ktrail', password: 'ktrail-test' },
  };
  if (await answering(url)) {
    // Tests stop and restart it, and read its CA: it must be the one this checkout runs.
    const owned = await run('bash', [SERVER_SCRIPT, 'owned']).then(
      () => true,
      () => false,
    );
    if (!owned) {
      throw new Error(
        `a clickhouse-server this checkout did not start answers on ${url}: stop it, or set KTRAIL_CH_HTTP_PORT`,
      );
    }
    return { ...rest, startedHere: false };
  }
  await serverScript('start');
  if (!(await answering(url))) throw new Error(`clickhouse-server did not answer on ${url}`);
  return { ...rest, startedHere: true };
}

/** Runs deploy/local/clickhouse-server.sh start|stop|status; throws with its output on failure. */
export async function serverScript(command: 'start' | 'stop' | 'status'): Promise<string> {
  try {
    const { stdout } = await run('bash', [SERVER_SCRIPT, command], { timeout: 240_000 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`clickhouse-server.sh ${command} failed: ${e.stderr || e.stdout || e.message}`.trim());
  }
}

/** Resolves to undefined when the server is available, else the reason (for itReal). */
export async function clickHouseServerMissing(): Promise<{ endpoint?: ServerEndpoint; missing?: string }> {
  try {
    return { endpoint: await ensureClickHouseServer() };
  } catch (err) {
    return { missing: `clickhouse-server unavailable: ${(err as Error).message}` };
  }
}

export type PrivateServer = {
  url: string;
  httpsUrl: string;
  /** The private CA that signed the server's certificate. */
  caFile: string;
  /** A CA that signed nothing the server has. */
  untrustedCaFile: string;
  user: { username: string; password: string };
  /** Starts it again after a stop, on the same ports and data (an outage's end). */
  start(): Promise<void>;
  stop(): Promise<void>;
};

/**
 * Debian's clickhouse-server for one test file: own ports, own directory (its pid file, so
 * `stop` stops only this one), and a certificate made here by a private CA (the script keeps
 * certificates it finds). Other tests stop and restart the shared server; this one is apart,
 * so a test can stop it for an outage without disturbing any other.
 */
export async function startPrivateClickHouseServer(work: string): Promise<PrivateServer> {
  const tls = join(work, 'clickhouse-server', 'tls');
  const ca = await makeCa(tls, 'ca');
  await issueCert(ca, tls, 'server');
  const untrusted = await makeCa(join(work, 'other-pki'), 'untrusted-ca');
  const [http, https, tcp] = await freePorts(3);
  const env = {
    ...process.env,
    KTRAIL_CACHE: work,
    KTRAIL_CH_HTTP_PORT: String(http),
    KTRAIL_CH_HTTPS_PORT: String(https),
    KTRAIL_CH_TCP_PORT: String(tcp),
  };
  const script = async (command: string): Promise<void> => {
    try {
      await run('bash', [SERVER_SCRIPT, command], { env, timeout: 240_000 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`clickhouse-server.sh ${command}: ${e.stderr || e.stdout || e.message}`.trim());
    }
  };
  const start = async (): Promise<void> => {
    await script('start');
    // The script reuses a server that answers: on these ports it must be this one, or an
    // outage here would stop nothing (and another test would see these tables).
    await script('owned').catch(() => {
      throw new Error(`another clickhouse-server answers on 127.0.0.1:${http}`);
    });
  };
  await start();
  return {
    url: `http://127.0.0.1:${http}`,
    httpsUrl: `https://127.0.0.1:${https}`,
    caFile: ca.cert,
    untrustedCaFile: untrusted.cert,
    user: { username: 'ktrail', password: 'ktrail-test' },
    start,
    stop: () => script('stop'),
  };
}

/**
 * The processor's cpu_sample, event_batches and alert_state tables in types 18.16 has (time
 * as String): Debian's server is too old for the migrations, so the HTTP-path tests write to
 * these.
 */
export async function createLegacyEventTables(ch: ClickHouseClient, database: string): Promise<void> {
  await ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
  await ch.command({
    // The identity columns from the processor's own list: the rows carry every one of them.
    query: `CREATE TABLE IF NOT EXISTS ${database}.cpu_sample (node String, boot_id String, time String,
      ${IDENTITY_COLUMNS.map((c) => `${c} String`).join(', ')},
      join_state String, kafka_partition UInt32, kafka_offset UInt64, ts_ns UInt64, cgroup_id UInt64, pid UInt32,
      tgid UInt32, flags UInt16, cpu_ns UInt64, switches UInt64, interval_ns UInt64)
      ENGINE = MergeTree ORDER BY (node, ts_ns)`,
  });
  await ch.command({
    query: `CREATE TABLE IF NOT EXISTS ${database}.event_batches (node String, boot_id String, sequence UInt64,
      time String, events UInt32, collector_version String, kafka_partition UInt32, kafka_offset UInt64)
      ENGINE = MergeTree ORDER BY (node, sequence)`,
  });
  await ch.command({
    query: `CREATE TABLE IF NOT EXISTS ${database}.alert_state (consumer_group String, topic String,
      partition UInt32, through_offset UInt64, state String, saved_at_ns UInt64)
      ENGINE = ReplacingMergeTree(saved_at_ns) ORDER BY (consumer_group, topic, partition)`,
  });
}
