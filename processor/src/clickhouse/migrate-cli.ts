// Applies the ClickHouse migrations outside the processor (which also applies them at start):
//   tsx processor/src/clickhouse/migrate-cli.ts --path data/chdb            (embedded chDB)
//   tsx processor/src/clickhouse/migrate-cli.ts --url http://host:8123 --user u --password p
// chDB: the data directory must not be open in another process (stop the processor first).
import { Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../../../common/log.js';
import { type ClickHouseConfig, createClickHouse } from './client.js';
import { migrate } from './migrate.js';

const log = createLogger('clickhouse.migrate-cli');

function days(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError('must be a positive whole number of days');
  return n;
}

const program = new Command('migrate')
  .description('apply ktrail ClickHouse migrations (versioned once, repeatable when their settings change)')
  .option(
    '--path <dir>',
    'embedded chDB data directory',
    process.env.KTRAIL_CLICKHOUSE_CHDB_PATH ?? 'data/chdb',
  )
  .option('--url <url>', 'a ClickHouse server instead of chDB', process.env.KTRAIL_CLICKHOUSE_URL)
  .option('--user <name>', 'server user', process.env.KTRAIL_CLICKHOUSE_USERNAME ?? 'default')
  .option('--password <secret>', 'server password', process.env.KTRAIL_CLICKHOUSE_PASSWORD ?? '')
  .option('--ca <file>', 'CA certificate (PEM) for https')
  .option('--cert <file>', 'client certificate (PEM), with --key')
  .option('--key <file>', 'client key (PEM), with --cert')
  .option('--database <name>', 'database', process.env.KTRAIL_CLICKHOUSE_DATABASE ?? 'ktrail')
  .option('--ttl-raw-days <n>', 'TTL of raw event tables', days, 14)
  .option('--ttl-rollup-days <n>', 'TTL of rollups and long-lived tables', days, 400)
  .parse();

const opts = program.opts<{
  path: string;
  url?: string;
  user: string;
  password: string;
  ca?: string;
  cert?: string;
  key?: string;
  database: string;
  ttlRawDays: number;
  ttlRollupDays: number;
}>();

const config: ClickHouseConfig =
  opts.url === undefined
    ? { kind: 'chdb', path: opts.path, database: opts.database }
    : {
        kind: 'server',
        url: opts.url,
        database: opts.database,
        username: opts.user,
        password: opts.password,
        ...(opts.ca === undefined
          ? {}
          : { tls: { caFile: opts.ca, certFile: opts.cert, keyFile: opts.key } }),
      };

const client = await createClickHouse(config);
try {
  const result = await migrate(client, { ttlRawDays: opts.ttlRawDays, ttlRollupDays: opts.ttlRollupDays });
  log.info(result, result.upToDate ? 'schema already up to date' : 'migrations applied');
  console.log(
    result.upToDate
      ? `ktrail schema in ${opts.database} is up to date`
      : `applied: ${result.applied.join(', ') || '-'}; re-applied: ${result.reapplied.join(', ') || '-'}`,
  );
} catch (err) {
  log.error({ err }, 'migration failed');
  process.exitCode = 1;
} finally {
  await client.close();
}
