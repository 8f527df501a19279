// Prometheus view of the processor's counters (read at scrape time, nothing on the hot path).
import { Gauge, type Registry } from 'prom-client';
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
  insertRetries: 'failed writes retried',
  batchesDropped: 'open batches dropped uncommitted on revocation (re-read by the new owner)',
  alerts: 'alerts raised',
  enrichedEvents: 'events published to the enriched topic (again for a batch rebuilt after a crash)',
  outputSkipped: 'events, alerts and dead letters not published because their topic was down (ingest_losses)',
  expiredRows: 'rows that arrived already older than their raw table TTL (ingest_losses)',
  alreadyWritten: 'rows of a re-processed batch found already in ClickHouse and not written again',
  alertStateFailures: 'alert-state snapshots not saved, not restored or stale (alerts may repeat or miss)',
};

export function registerProcessorMetrics(registry: Registry, processor: Processor): void {
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
