// Versioned schema migrations, applied at processor start (cli.ts; --migrate-only stops there).
//
// deploy/clickhouse/migrations/NNNN_name.sql run once each, in order, and are recorded in
// <database>.ktrail_migrations with a checksum of their text: editing a migration that was
// already applied is an error (write a new one instead). R_name.sql files are repeatable
// (as in Flyway): re-applied whenever their RENDERED text changes. That is how configured
// TTLs reach tables that already exist: R_ttl.sql renders `MODIFY TTL ... {{ttl_raw_days}}`,
// so a new ttlRawDays changes its text and it runs again.
//
// Statements are idempotent (IF NOT EXISTS, MODIFY), so a migration interrupted halfway
// is simply run again. Two processors migrating at once may both apply a pending migration;
// its statements tolerate that, and each applied version is checked by checksum.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { ConfigError, KtrailError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { REPO_ROOT } from '../../../common/repo-root.js';
import { describeClickHouse } from './client.js';
import { type ClusterLayout, clusterBootstrap, clusterStatements } from './cluster-ddl.js';
import { isPlainIdentifier } from './identifier.js';

const log = createLogger('processor.clickhouse.migrate');

export const MIGRATIONS_DIR = join(REPO_ROOT, 'deploy/clickhouse/migrations');

export type MigrateOptions = {
  /** Defaults to the database the client was created with. */
  database?: string;
  /** Raw event tables and dead letters (default 14). */
  ttlRawDays?: number;
  /** Rollups, containers, collector stats, batch sequence numbers (default 400). */
  ttlRollupDays?: number;
  /** Inserts remembered per table for token deduplication (default 1000). */
  dedupWindow?: number;
  /** A ClickHouse cluster's name: replicated local tables + Distributed ones (cluster-ddl.ts). */
  cluster?: string;
  /** Another migrations folder (tests). */
  dir?: string;
};

export type MigrationFile = {
  version: number;
  name: string;
  repeatable: boolean;
  text: string;
};

export type MigrateResult = { applied: string[]; reapplied: string[]; upToDate: boolean };

const VERSIONED = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const REPEATABLE = /^R_([a-z0-9_]+)\.sql$/;

export function readMigrations(dir: string = MIGRATIONS_DIR): MigrationFile[] {
  const files: MigrationFile[] = [];
  for (const file of readdirSync(dir).sort()) {
    const v = VERSIONED.exec(file);
    const r = REPEATABLE.exec(file);
    if (v === null && r === null) {
      if (file.endsWith('.sql'))
        throw new ConfigError(`migration ${file}: name must be NNNN_name.sql or R_name.sql`);
      continue;
    }
    const text = readFileSync(join(dir, file), 'utf8');
    if (v !== null) files.push({ version: Number(v[1]), name: v[2]!, repeatable: false, text });
    else files.push({ version: 0, name: `R_${r![1]}`, repeatable: true, text });
  }
  const seen = new Set<number>();
  for (const f of files) {
    if (f.repeatable) continue;
    if (seen.has(f.version)) throw new ConfigError(`two migrations share version ${f.version}`);
    seen.add(f.version);
  }
  return files;
}

const PLACEHOLDER = /\{\{\s*([a-z_]+)\s*\}\}/g;
const LOOP = /\{\{\s*for\s+([a-z_]+)\s+in\s+([a-z0-9_,\s]+?)\s*\}\}([\s\S]*?)\{\{\s*end\s*\}\}/g;

/**
 * Expands `{{for t in a, b, c}} ... {{t}} ... {{end}}` (the block once per name, so a
 * statement that is the same for many tables is written once), then replaces {{name}}
 * placeholders; an unknown placeholder is an error, not an empty string.
 */
export function render(text: string, vars: Record<string, string | number>): string {
  const expanded = text.replace(LOOP, (_, name: string, list: string, body: string) =>
    list
      .split(/[\s,]+/)
      .filter((item) => item !== '')
      .map((item) => body.replace(PLACEHOLDER, (whole, key: string) => (key === name ? item : whole)))
      .join(''),
  );
  return expanded.replace(PLACEHOLDER, (_, key: string) => {
    const value = vars[key];
    if (value === undefined) throw new ConfigError(`migration placeholder {{${key}}} has no value`);
    return String(value);
  });
}

/** Splits a script on `;` outside quotes and comments; comments are dropped. */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i]!;
    const next = sql[i + 1];
    if (ch === '-' && next === '-') {
      while (i < sql.length && sql[i] !== '\n') i++;
      continue;
    }
    if (ch === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? sql.length : end + 2;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') {
      let j = i + 1;
      while (j < sql.length && sql[j] !== ch) j += sql[j] === '\\' ? 2 : 1;
      cur += sql.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (ch === ';') {
      if (cur.trim() !== '') out.push(cur.trim());
      cur = '';
      i++;
      continue;
    }
    cur += ch;
    i++;
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${name} must be a positive integer number of days, got ${value}`);
  }
  return value;
}

/** One migration as it will run: its rendered statements for the chosen layout. */
export type PlannedMigration = { file: MigrationFile; label: string; rendered: string; statements: string[] };

/** Renders every migration for a database and layout; no connection needed (--print-ddl). */
export function planMigrations(options: MigrateOptions & { database: string }): PlannedMigration[] {
  const { database } = options;
  if (!isPlainIdentifier(database)) {
    throw new ConfigError(`migrate: database must be a plain identifier, got ${JSON.stringify(database)}`);
  }
  const vars = {
    database,
    ttl_raw_days: positiveInt('ttlRawDays', options.ttlRawDays ?? 14),
    ttl_rollup_days: positiveInt('ttlRollupDays', options.ttlRollupDays ?? 400),
    dedup_window: positiveInt('dedupWindow', options.dedupWindow ?? 1000),
  };
  const files = readMigrations(options.dir);
  const layout: ClusterLayout | undefined =
    options.cluster === undefined ? undefined : { cluster: options.cluster, database };
  // The cluster rules need every table created before an ALTER names it, across files.
  const tables = new Set<string>();
  // Versioned first (in order), then the repeatable ones, which may touch any table.
  const ordered = [...files.filter((f) => !f.repeatable), ...files.filter((f) => f.repeatable)];
  return ordered.map((file) => {
    const rendered = render(file.text, vars);
    const single = splitStatements(rendered);
    const label = file.repeatable
      ? `${file.name}.sql`
      : `${String(file.version).padStart(4, '0')}_${file.name}.sql`;
    return {
      file,
      label,
      rendered,
      statements: layout === undefined ? single : clusterStatements(single, layout, tables),
    };
  });
}

/** The statements that create the database and the migration history, for the layout. */
export function bootstrapStatements(database: string, cluster?: string): string[] {
  if (cluster !== undefined) return clusterBootstrap({ cluster, database });
  return [
    `CREATE DATABASE IF NOT EXISTS ${database}`,
    `CREATE TABLE IF NOT EXISTS ${database}.ktrail_migrations
      (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
      ENGINE = MergeTree ORDER BY (version, name, applied_at)`,
  ];
}

export async function migrate(
  client: ClickHouseClient,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const database = options.database ?? describeClickHouse(client)?.database;
  if (database === undefined || !isPlainIdentifier(database)) {
    throw new ConfigError(`migrate: database must be a plain identifier, got ${JSON.stringify(database)}`);
  }
  const plan = planMigrations({ ...options, database });
  for (const query of bootstrapStatements(database, options.cluster)) await client.command({ query });
  const rs = await client.query({
    query: `SELECT version, name, argMax(checksum, applied_at) AS checksum
            FROM ${database}.ktrail_migrations GROUP BY version, name`,
    format: 'JSONEachRow',
  });
  const applied = new Map<string, string>();
  for (const row of await rs.json<{ version: number | string; name: string; checksum: string }>()) {
    applied.set(`${Number(row.version)}:${row.name}`, row.checksum);
  }

  const result: MigrateResult = { applied: [], reapplied: [], upToDate: true };
  for (const { file, label, rendered, statements } of plan) {
    // Versioned: checksum of the file as written (settings must not look like an edit).
    // Repeatable: checksum of the rendered text (a settings change IS the trigger).
    const checksum = sha256(file.repeatable ? rendered : file.text);
    const key = `${file.version}:${file.name}`;
    const previous = applied.get(key);
    if (previous === checksum) continue;
    if (previous !== undefined && !file.repeatable) {
      throw new ConfigError(
        `migration ${label} was applied with checksum ${previous.slice(0, 12)} but the file now has ` +
          `${checksum.slice(0, 12)}: applied migrations must not change; add a new migration instead`,
      );
    }
    log.info({ migration: label, statements: statements.length, database }, 'applying migration');
    for (const [index, statement] of statements.entries()) {
      try {
        await client.command({ query: statement });
      } catch (err) {
        throw new KtrailError(
          `migration ${label} statement ${index + 1}/${statements.length} failed: ${(err as Error).message}`,
          { cause: err, context: { statement: statement.slice(0, 200) } },
        );
      }
    }
    await client.insert({
      table: `${database}.ktrail_migrations`,
      values: [{ version: file.version, name: file.name, checksum }],
      format: 'JSONEachRow',
      // A token of its own (chDB: so no token left on the session applies to this insert).
      clickhouse_settings:
        describeClickHouse(client)?.dedupToken === false
          ? {}
          : { insert_deduplication_token: `ktrail_migrations:${key}:${checksum}:${Date.now()}` },
    });
    result.upToDate = false;
    (previous === undefined ? result.applied : result.reapplied).push(label);
  }
  if (result.upToDate) log.info({ database }, 'schema up to date');
  return result;
}
