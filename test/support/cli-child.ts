// The collector or processor CLI as a child process for e2e tests: its output kept (the last
// 400 chunks) for the failure message, and a stop that sends SIGTERM, then SIGKILL; the
// processor's SQL once its query endpoint answers.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../common/repo-root.js';
import { httpRunner, type SqlRunner } from '../../deploy/clickhouse/queries.js';
import { freePorts } from './ports.js';
import { waitFor } from './wait.js';

export function launchCli(
  name: 'collector' | 'processor',
  env: Record<string, string>,
  log: string[],
  args: string[] = [],
): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', `${REPO_ROOT}/${name}/src/cli.ts`, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer) => {
    log.push(chunk.toString());
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return child;
}

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves to the exit code. */
export async function stopCli(child: ChildProcess | undefined, killAfterMs = 40_000): Promise<number | null> {
  if (!child || child.exitCode !== null) return child?.exitCode ?? null;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/**
 * SQL through a processor CLI's query endpoint, once it answers: the processor writes its
 * token into `tokenDir` (beside its store) at start, then migrates before it listens.
 */
export async function processorSql(tokenDir: string, queryPort: number): Promise<SqlRunner> {
  const tokenFile = join(tokenDir, 'query-token');
  await waitFor('the query token', () => (existsSync(tokenFile) ? true : undefined), 120_000, 250);
  const sql = httpRunner(`http://127.0.0.1:${queryPort}/`, readFileSync(tokenFile, 'utf8').trim());
  await waitFor(
    'the processor query endpoint',
    // Not listening yet is not a failure here: the processor is still migrating.
    async () => ((await sql.rows('SELECT 1 AS ok').catch(() => []))[0] ? true : undefined),
    120_000,
    500,
  );
  return sql;
}

/** The processor CLI on a chDB store at `chdbDir` (its own HTTP and query ports); resolves once it answers SQL. */
export async function startProcessorCli(
  env: Record<string, string>,
  chdbDir: string,
  log: string[],
): Promise<{ child: ChildProcess; sql: SqlRunner }> {
  const [httpPort, queryPort] = await freePorts(2);
  const child = launchCli(
    'processor',
    {
      KTRAIL_HTTP_PORT: String(httpPort),
      KTRAIL_CLICKHOUSE_CHDB_PATH: chdbDir,
      KTRAIL_PROCESSOR_QUERY_PORT: String(queryPort),
      ...env,
    },
    log,
  );
  return { child, sql: await processorSql(join(chdbDir, '..'), queryPort as number) };
}
