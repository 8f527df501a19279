#!/usr/bin/env -S npx tsx
// ktrail processor: consume events and container metadata, write ClickHouse, publish
// enriched events and alerts. SIGTERM/SIGINT: stop consuming, flush, commit, exit 0.
import { Command } from 'commander';
import { loadConfig, printableConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { createKafka, ensureTopics, kafkaClientOptions, topicNames } from '../../common/kafka.js';
import { createLogger, setLogLevel } from '../../common/log.js';
import { createRegistry, startHttpServer } from '../../common/metrics.js';
import { clickHouseAlertStateStore } from './alert-state.js';
import { clickHouseConfigFrom, createClickHouse } from './clickhouse/client.js';
import { migrate } from './clickhouse/migrate.js';
import { createProcessorCodec } from './codec.js';
import { registerProcessorMetrics } from './metrics.js';
import { createProcessor, processorTopics } from './processor.js';
import { queryToken, queryTokenFile, startQueryEndpoint } from './query-endpoint.js';
import { clickHouseSink } from './sink.js';

const log = createLogger('processor.cli');

const program = new Command()
  .name('ktrail-processor')
  .description('Kafka -> join container metadata -> ClickHouse, enriched events and alerts')
  .option('-c, --config <file>', 'YAML or JSON config file')
  .option('--clickhouse-url <url>', 'a ClickHouse server (default: embedded chDB)')
  .option('--chdb-path <dir>', 'embedded chDB data directory')
  .option('--migrate-only', 'apply ClickHouse migrations and exit')
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
  setLogLevel(config.log.level);

  const clickhouse = await createClickHouse(clickHouseConfigFrom(config.clickhouse));
  await migrate(clickhouse, {
    ttlRawDays: config.clickhouse.ttlRawDays,
    ttlRollupDays: config.clickhouse.ttlRollupDays,
    dedupWindow: config.clickhouse.dedupWindow,
  });
  if (opts.migrateOnly === true) {
    log.info('migrations applied');
    await clickhouse.close();
    return;
  }

  const kafka = createKafka(kafkaClientOptions(config.kafka, 'processor'), log);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, {
    prefix: config.kafka.topicPrefix,
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
  });
  await admin.disconnect();
  const names = topicNames(config.kafka.topicPrefix);
  const processor = createProcessor({
    kafka,
    topics: processorTopics(names),
    sink: clickHouseSink(clickhouse),
    codec: createProcessorCodec(),
    options: { ...config.processor, rawTtlDays: config.clickhouse.ttlRawDays },
    alertState: clickHouseAlertStateStore(clickhouse),
  });
  const registry = createRegistry('processor', config.node);
  registerProcessorMetrics(registry, processor);
  const http = await startHttpServer({
    port: config.http.port,
    host: config.http.host,
    registry,
    ready: processor.ready,
  });
  // SQL while the pipeline runs: the embedded store belongs to this process (one chDB per
  // data directory), so it serves a ClickHouse-compatible endpoint. A server needs none.
  const query =
    config.clickhouse.url === undefined
      ? await startQueryEndpoint({
          client: clickhouse,
          port: config.processor.queryPort,
          host: config.http.host,
          token: queryToken(queryTokenFile(config)),
          timeoutMs: config.processor.queryTimeoutMs,
          maxResultBytes: config.processor.queryMaxResultBytes,
          logger: log,
        })
      : undefined;

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: flush, commit, leave the group');
    const deadline = setTimeout(() => {
      log.error(
        'stop deadline passed; exiting without a final commit (nothing is lost: uncommitted data is re-read)',
      );
      process.exit(1);
    }, Number(opts.stopTimeoutMs));
    deadline.unref();
    processor
      .stop()
      .then(() => Promise.all([http.close(), query?.close()]))
      .then(() => clickhouse.close())
      .then(() => {
        log.info({ stats: processor.stats() }, 'stopped');
        process.exit(0);
      })
      .catch((err) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  await processor.start();
  log.info({ groupId: config.processor.groupId, topics: names }, 'processor running');
}

main().catch((err) => {
  if (err instanceof ConfigError) console.error(`ktrail-processor: ${err.message}`);
  else log.fatal({ err }, 'processor failed');
  process.exit(err instanceof ConfigError ? 2 : 1);
});
