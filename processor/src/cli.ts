#!/usr/bin/env -S npx tsx
// ktrail processor: consume events and container metadata, write ClickHouse, publish
// enriched events and alerts. SIGTERM/SIGINT: stop consuming, flush, commit, exit 0.
import { Command } from 'commander';
import { loadConfig, printableConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { createLogger, setLogLevel } from '../../common/log.js';
import { clickHouseConfigFrom, createClickHouse, releaseEngineStartupPages } from './clickhouse/client.js';
import { bootstrapStatements, migrate, planMigrations } from './clickhouse/migrate.js';
import { processorMemory, runProcessor } from './run.js';

const log = createLogger('processor.cli');

const program = new Command()
  .name('ktrail-processor')
  .description('Kafka -> join container metadata -> ClickHouse, enriched events and alerts')
  .option('-c, --config <file>', 'YAML or JSON config file')
  .option('--clickhouse-url <url>', 'a ClickHouse server (default: embedded chDB)')
  .option('--chdb-path <dir>', 'embedded chDB data directory')
  .option('--migrate-only', 'apply ClickHouse migrations and exit')
  .option('--print-ddl', 'print the SQL the migrations run for this config (cluster or not) and exit')
  .option('--print-config', 'print the validated configuration as JSON (secrets as "[secret]") and exit')
  .option(
    '--set <key=value>',
    'override a setting (repeatable), e.g. processor.batchMaxRows=20000',
    collect,
    [],
  )
  .option('--stop-timeout-ms <ms>', 'give up flushing on SIGTERM after this long', '30000');

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function main(): Promise<void> {
  const opts = program.parse().opts<{
    config?: string;
    clickhouseUrl?: string;
    chdbPath?: string;
    migrateOnly?: boolean;
    printDdl?: boolean;
    printConfig?: boolean;
    set: string[];
    stopTimeoutMs: string;
  }>();
  const overrides = [...opts.set];
  if (opts.clickhouseUrl !== undefined) overrides.push(`clickhouse.url=${opts.clickhouseUrl}`);
  if (opts.chdbPath !== undefined) overrides.push(`clickhouse.chdbPath=${opts.chdbPath}`);
  const config = loadConfig({ file: opts.config, overrides });
  if (opts.printConfig === true) {
    process.stdout.write(`${printableConfig(config)}\n`);
    return;
  }
  const migrateOptions = {
    ttlRawDays: config.clickhouse.ttlRawDays,
    ttlRollupDays: config.clickhouse.ttlRollupDays,
    dedupWindow: config.clickhouse.dedupWindow,
    ...(config.clickhouse.cluster === undefined ? {} : { cluster: config.clickhouse.cluster }),
  };
  if (opts.printDdl === true) {
    const { database, cluster } = config.clickhouse;
    const statements = [
      ...bootstrapStatements(database, cluster),
      ...planMigrations({ ...migrateOptions, database }).flatMap((m) => [`-- ${m.label}`, ...m.statements]),
    ];
    process.stdout.write(`${statements.map((s) => (s.startsWith('--') ? s : `${s};`)).join('\n\n')}\n`);
    return;
  }
  setLogLevel(config.log.level);
  // Before connecting anything: a budget that can't hold the process is a configuration error.
  const memory = opts.migrateOnly === true ? undefined : processorMemory(config);

  const clickhouse = await createClickHouse(clickHouseConfigFrom(config.clickhouse));
  await migrate(clickhouse, migrateOptions);
  if (memory === undefined) {
    log.info('migrations applied');
    await clickhouse.close();
    return;
  }

  releaseEngineStartupPages(clickhouse);
  await runProcessor(config, clickhouse, memory, Number(opts.stopTimeoutMs));
}

main().catch((err) => {
  if (err instanceof ConfigError) console.error(`ktrail-processor: ${err.message}`);
  else log.fatal({ err }, 'processor failed');
  process.exit(err instanceof ConfigError ? 2 : 1);
});
