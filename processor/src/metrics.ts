// Prometheus view of the processor's counters (read at scrape time, nothing on the hot path).
import { Gauge, type Registry } from 'prom-client';
import type { PendingSnapshot } from './pending-budget.js';
import type { Processor, ProcessorStats } from './processor.js';

const HELP: Record<keyof ProcessorStats, string> = {
  messages: 'Kafka messages consumed from the events topic',
  events: 'events decoded',
  rowsWritten: 'rows inserted into ClickHouse and committed',
  batchesCommitted: 'batches inserted and committed',
  deadLetters: 'messages sent to the dead-letter path',
  latePending: 'rows written with join_state pending (metadata late past the wait)',
  lateOverflow: 'rows that found the late-metadata buffer full',
  lateResolved: 'rows joined after waiting for late metadata',
  metadataRecords: 'container records applied',
  metadataEvictions: 'stopped containers evicted from the metadata tables',
  insertRetries: 'failed writes (inserts, offset commits) retried',
  batchesDropped: 'open batches dropped uncommitted on revocation (re-read by the new owner)',
  alerts: 'alerts raised',
  enrichedEvents: 'events published to the enriched topic (again for a batch rebuilt after a crash)',
  outputSkipped: 'events, alerts and dead letters not published because their topic was down (ingest_losses)',
  expiredRows: 'rows that arrived already older than their raw table TTL (ingest_losses)',
  duplicateEvents: 'events of messages Kafka held twice, left out so each is written once (ingest_losses)',
  alreadyWritten: 'rows of a re-processed batch found already in ClickHouse and not written again',
  alertStateFailures: 'alert-state snapshots not saved, not restored or stale (alerts may repeat or miss)',
  schemaRegistryOutages:
    'times the schema registry stopped answering (decoding paused, nothing dead-lettered)',
  schemaRegistryHeldBatches: 'fetched batches left in Kafka until their writer schemas could be looked up',
};

export function registerProcessorMetrics(
  registry: Registry,
  processor: Processor,
  memoryBudgetBytes?: number,
): void {
  for (const key of Object.keys(HELP) as (keyof ProcessorStats)[]) {
    const name = `ktrail_processor_${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`;
    new Gauge({
      name,
      help: HELP[key],
      registers: [registry],
      collect() {
        this.set(processor.stats()[key]);
      },
    });
  }
  // The pending-rows bound (pending-budget.ts): rows held now, the bound, paused partitions.
  const pendingGauges: Array<[string, string, (p: PendingSnapshot) => number]> = [
    ['ktrail_processor_pending_rows', 'rows held in open batches and cuts being written', (p) => p.rows],
    [
      'ktrail_processor_pending_rows_max',
      'bound on pending rows (processor.pendingMaxRows)',
      (p) => p.maxRows,
    ],
    ['ktrail_processor_pending_rows_peak', 'most rows held at once since start', (p) => p.peakRows],
    [
      'ktrail_processor_fetch_paused_partitions',
      'events partitions paused at the bound',
      (p) => p.paused.length,
    ],
    [
      'ktrail_processor_fetch_pauses_total',
      'times an events partition was paused at the bound',
      (p) => p.pauses,
    ],
  ];
  for (const [name, help, read] of pendingGauges)
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(processor.pending()));
      },
    });
  if (memoryBudgetBytes !== undefined)
    new Gauge({
      name: 'ktrail_processor_memory_budget_bytes',
      help: 'memory budget the pending-rows bound is derived from',
      registers: [registry],
    }).set(memoryBudgetBytes);
  new Gauge({
    name: 'ktrail_processor_losses_total',
    help: 'rows or messages knowingly not delivered in full, by what (a table or topic:<output>) and reason; the ingest_losses table has them per batch',
    labelNames: ['what', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of processor.losses()) this.set({ what: l.what, reason: l.reason }, l.rows);
    },
  });
}
