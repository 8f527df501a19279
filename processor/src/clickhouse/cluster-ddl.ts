// The migrations' statements for a ClickHouse cluster (shards x replicas), generated from the
// single-node ones so the two layouts can never drift (docs/scale.md, "ClickHouse cluster").
//
// Layout: every MergeTree-family table lives in `<database>_local` as its Replicated* twin,
// created ON CLUSTER; `<database>.<table>` is a Distributed table over it with a
// deterministic sharding key (a node's rows on one shard), so inserts, the written-rows
// check and every query keep using `<database>.<table>` as on one node. Materialized views
// run where the rows land (local source -> local target); plain views read the Distributed
// tables. A deterministic key makes a retried insert split into the same per-shard blocks,
// which carry the insert's dedup token and are dropped by the replicas that have them.
import { ConfigError } from '../../../common/errors.js';
import { isPlainIdentifier } from './identifier.js';

export type ClusterLayout = {
  /** Name of the cluster in the servers' remote_servers config. */
  cluster: string;
  /** The query-facing database (Distributed tables and views). */
  database: string;
};

/** The database holding the replicated tables of `database`. */
export function localDatabase(database: string): string {
  return `${database}_local`;
}

// Tables without a `node` column shard by the key their rows are replaced or looked up by.
const SHARDING_KEYS: Record<string, string> = {
  dead_letters: 'cityHash64(source_topic, source_partition)',
  alert_state: 'cityHash64(consumer_group, topic, partition)',
};
const DEFAULT_SHARDING_KEY = 'cityHash64(node)';

const CREATE_TABLE = /^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*\(/i;
const CREATE_MV = /^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+)\s+TO\s/i;
const CREATE_VIEW = /^CREATE (?:OR REPLACE )?VIEW (?:IF NOT EXISTS )?(\w+)\.(\w+)\s+AS\s/i;
const DROP_VIEW = /^DROP VIEW IF EXISTS (\w+)\.(\w+)$/i;
const ALTER_TABLE = /^ALTER TABLE (\w+)\.(\w+)\s+(ADD COLUMN|MODIFY TTL|MODIFY SETTING)\s/i;
const INSERT_INTO = /^INSERT INTO /i;
const MERGE_TREE_ENGINE = /ENGINE\s*=\s*((?:Replacing|Aggregating|Summing|Collapsing)?MergeTree)\b/i;

function quoted(name: string): string {
  return `'${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * Rewrites rendered single-node statements (one migration's, in order) for the cluster.
 * `tables` collects the MergeTree tables seen so far, across migrations: later ALTERs need
 * to know which names have a local twin. Throws on a statement form it does not know, so a
 * new kind of migration statement gets a cluster rule instead of a silent pass-through.
 */
export function clusterStatements(
  statements: string[],
  layout: ClusterLayout,
  tables: Set<string> = new Set(),
): string[] {
  const { cluster, database } = layout;
  if (!isPlainIdentifier(database)) throw new ConfigError(`bad database name ${JSON.stringify(database)}`);
  if (!/^[A-Za-z0-9_{}.-]+$/.test(cluster)) {
    throw new ConfigError(`clickhouse.cluster must be a cluster name, got ${JSON.stringify(cluster)}`);
  }
  const local = localDatabase(database);
  const onCluster = `ON CLUSTER ${quoted(cluster)}`;
  const toLocal = (sql: string) => sql.replace(new RegExp(`\\b${database}\\.`, 'g'), `${local}.`);
  const out: string[] = [];
  for (const statement of statements) {
    const table = CREATE_TABLE.exec(statement);
    if (table !== null && table[1] === database) {
      const name = table[2]!;
      const engine = MERGE_TREE_ENGINE.exec(statement);
      if (engine === null) throw new ConfigError(`cluster DDL: ${name} is not a MergeTree table`);
      if (!SHARDING_KEYS[name] && !/\(\s*node\s|\n\s*node\s/.test(statement)) {
        throw new ConfigError(`cluster DDL: table ${name} has no node column and no sharding key`);
      }
      tables.add(name);
      const replicated = toLocal(statement)
        .replace(CREATE_TABLE, `CREATE TABLE IF NOT EXISTS ${local}.${name} ${onCluster} (`)
        .replace(MERGE_TREE_ENGINE, (_, e: string) => `ENGINE = Replicated${e}`)
        .replace(/\bnon_replicated_deduplication_window\b/g, 'replicated_deduplication_window');
      out.push(replicated);
      out.push(
        `CREATE TABLE IF NOT EXISTS ${database}.${name} ${onCluster} AS ${local}.${name} ` +
          `ENGINE = Distributed(${quoted(cluster)}, ${local}, ${name}, ${SHARDING_KEYS[name] ?? DEFAULT_SHARDING_KEY})`,
      );
      continue;
    }
    const mv = CREATE_MV.exec(statement);
    if (mv !== null) {
      const body = toLocal(statement).replace(
        /^(CREATE MATERIALIZED VIEW IF NOT EXISTS \w+\.\w+)/i,
        `$1 ${onCluster}`,
      );
      out.push(body);
      continue;
    }
    const view = CREATE_VIEW.exec(statement);
    if (view !== null) {
      const withCluster = (sql: string) =>
        sql.replace(/^(CREATE (?:OR REPLACE )?VIEW (?:IF NOT EXISTS )?\w+\.\w+)/i, `$1 ${onCluster}`);
      // Each view also exists per shard, over the local tables: a query-side view joins
      // those on every shard (the tables are co-sharded by node), never a Distributed table
      // inside a distributed query (refused by distributed_product_mode = 'deny').
      out.push(withCluster(toLocal(statement)));
      out.push(withCluster(statement.replace(new RegExp(`\\bJOIN ${database}\\.`, 'g'), `JOIN ${local}.`)));
      continue;
    }
    const drop = DROP_VIEW.exec(statement);
    if (drop !== null) {
      // Views dropped by a migration were materialized views (local) or plain ones (query side).
      out.push(`DROP VIEW IF EXISTS ${local}.${drop[2]} ${onCluster}`);
      out.push(`DROP VIEW IF EXISTS ${database}.${drop[2]} ${onCluster}`);
      continue;
    }
    const alter = ALTER_TABLE.exec(statement);
    if (alter !== null) {
      const name = alter[2]!;
      if (!tables.has(name)) throw new ConfigError(`cluster DDL: ALTER of ${name}, which has no local table`);
      const rest = statement.slice(`ALTER TABLE ${alter[1]}.${name}`.length);
      const renamed = rest.replace(
        /\bnon_replicated_deduplication_window\b/g,
        'replicated_deduplication_window',
      );
      out.push(`ALTER TABLE ${local}.${name} ${onCluster}${renamed}`);
      // The Distributed table mirrors the columns; TTLs and merge settings are the local table's.
      if (/^ADD COLUMN$/i.test(alter[3]!)) out.push(`ALTER TABLE ${database}.${name} ${onCluster}${rest}`);
      continue;
    }
    if (INSERT_INTO.test(statement)) {
      // Data moves between ktrail's own tables: one node runs it through the Distributed tables.
      out.push(statement);
      continue;
    }
    throw new ConfigError(`cluster DDL: no cluster rule for statement: ${statement.slice(0, 80)}`);
  }
  return out;
}

/** The statements migrate() runs before any migration, for the cluster layout. */
export function clusterBootstrap(layout: ClusterLayout): string[] {
  const local = localDatabase(layout.database);
  const onCluster = `ON CLUSTER ${quoted(layout.cluster)}`;
  return [
    `CREATE DATABASE IF NOT EXISTS ${layout.database} ${onCluster}`,
    `CREATE DATABASE IF NOT EXISTS ${local} ${onCluster}`,
    // One history for the whole cluster: every replica of every shard shares the path.
    `CREATE TABLE IF NOT EXISTS ${layout.database}.ktrail_migrations ${onCluster}
      (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
      ENGINE = ReplicatedMergeTree('/clickhouse/ktrail/${layout.database}/ktrail_migrations', '{shard}-{replica}')
      ORDER BY (version, name, applied_at)`,
  ];
}
