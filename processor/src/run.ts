// The processor as a running service, once its ClickHouse client is ready: Kafka topics,
// the consumer group member, metrics and health, the query endpoint over an embedded store,
// and SIGTERM/SIGINT handling. cli.ts creates the client and applies the migrations first;
// a test that must run against a server too old for the migrations brings its own client.
import { getHeapStatistics } from 'node:v8';
import type { ClickHouseClient } from '@clickhouse/client';
import type { KtrailConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { ensureTopics, topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import {
  mib,
  type ProcessorMemoryPlan,
  planProcessorMemory,
  resolveBudget,
  SHIPPED_LIMIT,
} from '../../common/memory-budget.js';
import { createRegistry, startHttpServer } from '../../common/metrics.js';
import { clickHouseAlertStateStore } from './alert-state.js';
import { processorCodecFor } from './codec.js';
import { registerProcessorMetrics } from './metrics.js';
import { createProcessor, processorTopics } from './processor.js';
import { queryToken, queryTokenFile, startQueryEndpoint } from './query-endpoint.js';
import { clickHouseSink } from './sink.js';

const log = createLogger('processor.cli');

/** The bound on pending rows from the memory budget (common/memory-budget.ts); ConfigError if it can't fit. */
export function processorMemory(config: KtrailConfig): ProcessorMemoryPlan {
  return planProcessorMemory({
    budget: resolveBudget(
      { name: 'processor.memoryBudgetBytes', value: config.processor.memoryBudgetBytes },
      SHIPPED_LIMIT.processor,
    ),
    embedded: config.clickhouse.url === undefined,
    heapLimitBytes: getHeapStatistics().heap_size_limit,
    pendingMaxRows: config.processor.pendingMaxRows,
  });
}

export async function runProcessor(
  config: KtrailConfig,
  clickhouse: ClickHouseClient,
  memory: ProcessorMemoryPlan,
  stopTimeoutMs: number,
): Promise<void> {
  log.info(
    {
      budget: memory.budget,
      baseline: mib(memory.baselineBytes),
      headroom: mib(memory.headroomBytes),
      heapLimit: mib(memory.heapLimitBytes),
      pendingMaxRows: memory.pendingMaxRows,
    },
    `memory budget ${mib(memory.budget.bytes)}: at most ${memory.pendingMaxRows} pending rows`,
  );
  const kafka = createKafka(kafkaClientOptions(config.kafka, 'processor'), log);
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureTopics(admin, {
    prefix: config.kafka.topicPrefix,
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
  });
  await admin.disconnect();
  log.info({ created: topics.created, replication: topics.replication }, 'topics ready');
  if (topics.fewerReplicas.length > 0)
    log.warn(
      { topics: topics.fewerReplicas, replication: topics.replication },
      'topics keep fewer copies than the cluster could hold (created on fewer brokers)',
    );
  const names = topicNames(config.kafka.topicPrefix);
  const { memoryBudgetBytes: _budget, pendingMaxRows: _rows, ...settings } = config.processor;
  const processor = createProcessor({
    kafka,
    topics: processorTopics(names),
    sink: clickHouseSink(clickhouse),
    codec: processorCodecFor(config.kafka),
    options: { ...settings, pendingMaxRows: memory.pendingMaxRows, rawTtlDays: config.clickhouse.ttlRawDays },
    alertState: clickHouseAlertStateStore(clickhouse),
  });
  const registry = createRegistry('processor', config.node);
  registerProcessorMetrics(registry, processor, memory.budget.bytes);
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
    }, stopTimeoutMs);
    deadline.unref();
    processor
      .stop()
      .then(() => Promise.all([http.close(), query?.close()]))
      .then(() => clickhouse.close())
      .then(() => {
        log.info({ stats: processor.stats(), pending: processor.pending() }, 'stopped');
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
