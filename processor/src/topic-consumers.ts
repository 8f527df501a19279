// The two small consumers next to the events pipeline: container records (the join's
// metadata and the containers dimension table) and collector stats (one row per message).
import type { Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { REASON, requireValue } from './dead-letters.js';
import type { GroupRuntime, TopicBatch } from './group-runtime.js';
import type { MetadataTable } from './metadata-table.js';
import { dedupToken, type Row } from './partition-batch.js';
import type { PartitionPipeline } from './partition-pipeline.js';
import type { BatchControl, ProcessorCodec, ProcessorStats, RowSink } from './processor-types.js';
import {
  COLLECTOR_STATS_TABLE,
  CONTAINERS_TABLE,
  containerMetaFromRecord,
  containerRow,
  DEAD_LETTERS_TABLE,
  deadLetterRow,
  statsRow,
} from './rows.js';
import { insertByToken, LostPartitionError, retryWhileOwned } from './table-insert.js';
import { identityColumns } from './workload.js';

export interface ContainersDeps {
  store: RowSink;
  codec: ProcessorCodec;
  stats: ProcessorStats;
  log: Logger;
  /** The partition's metadata table (kept across rebalances while the partition stays). */
  metadata(partition: number): MetadataTable | undefined;
  /** The partition's events pipeline, when this member owns it. */
  pipeline(partition: number): PartitionPipeline | undefined;
  /** The containers partition was read up to (excluding) `next`: restore progress. */
  readUpTo(partition: number, next: bigint): void;
  /** Counts (sampled log) a record that could not be decoded while no pipeline takes its dead letter. */
  skipped(reason: string, fields: Record<string, unknown>, msg: string): void;
}

/**
 * Container records: applied to the partition's metadata table (joining rows that wait
 * for them), then written to the containers dimension table. That table is a
 * ReplacingMergeTree read through containers_latest, so the re-reads every assignment
 * does are harmless there; its insert is best effort (the join in memory does not
 * depend on it, and the next assignment writes the records again).
 */
export async function consumeContainers(
  d: ContainersDeps,
  batch: TopicBatch,
  ctl: BatchControl,
): Promise<void> {
  const p = batch.partition;
  const metadata = d.metadata(p);
  const pipeline = d.pipeline(p);
  if (metadata === undefined || batch.messages.length === 0) return;
  const resolvedBefore = d.stats.lateResolved;
  const rows: Row[] = [];
  for (const message of batch.messages) {
    // Tombstones (null value) carry no version; the record's REMOVED state evicts instead.
    if (message.value === null) continue;
    let rec: Record<string, unknown>;
    try {
      rec = d.codec.decodeContainerRecord(message.value);
    } catch (err) {
      if (pipeline !== undefined) pipeline.deadLetter(batch.topic, message, err);
      else
        d.skipped(
          'container_skipped',
          { err, partition: p, offset: message.offset },
          'undecodable container record skipped',
        );
      continue;
    }
    const meta = containerMetaFromRecord(rec);
    metadata.upsert(meta);
    rows.push(containerRow(rec, identityColumns(meta)));
    d.stats.metadataRecords++;
    if (pipeline !== undefined)
      d.stats.lateResolved +=
        meta.containerId === ''
          ? pipeline.batch.resolveHost(meta.node, meta.cgroupId)
          : pipeline.batch.resolve(
              meta.node,
              meta.cgroupId,
              (at) => metadata.lookup(meta.node, meta.cgroupId, at),
              meta,
            );
  }
  // Rows that stopped waiting can make the open batch due before its timer's deadline.
  if (pipeline !== undefined && d.stats.lateResolved > resolvedBefore) pipeline.cutIfDue();
  const next = BigInt(batch.lastOffset()) + 1n;
  d.readUpTo(p, next);
  if (rows.length > 0) {
    const token = dedupToken(CONTAINERS_TABLE, batch.topic, p, BigInt(batch.firstOffset() ?? '0'), next - 1n);
    try {
      await d.store.insert(CONTAINERS_TABLE, rows, token);
    } catch (err) {
      d.log.error(
        { err: (err as Error).message, partition: p },
        'containers dimension insert failed; joins in memory are unaffected',
      );
    }
  }
  for (const message of batch.messages) ctl.resolveOffset(message.offset);
}

export interface StatsDeps {
  codec: ProcessorCodec;
  runtime: Pick<GroupRuntime, 'commit' | 'heartbeat'>;
  log: Logger;
  /** The partition's events pipeline: stats are only taken while this member owns it. */
  pipeline(partition: number): PartitionPipeline | undefined;
  /** One dead letter to the topic (a skip is counted as a loss). */
  produceDeadLetter(dl: DeadLetter): Promise<void>;
}

/**
 * Collector stats -> collector_stats, one insert per message: they are a few per node per
 * minute, and a token per offset (collector_stats:topic:partition:o-o) makes every retry
 * after a crash or a rebalance a no-op without any cut bookkeeping. The stats offset is
 * committed after the inserts, only while partition p is still ours.
 */
export async function consumeStats(d: StatsDeps, batch: TopicBatch, ctl: BatchControl): Promise<void> {
  const topic = batch.topic;
  const pipeline = d.pipeline(batch.partition);
  if (pipeline === undefined || !pipeline.owned()) return;
  await pipeline.init;
  const ctx = pipeline.insertContext();
  for (const message of batch.messages) {
    if (!ctl.active() || !pipeline.owned()) return;
    const offset = BigInt(message.offset);
    let table = COLLECTOR_STATS_TABLE;
    let row: Row;
    try {
      row = statsRow(d.codec.decodeCollectorStats(requireValue(message.value)));
    } catch (err) {
      const dl = pipeline.toDeadLetter(topic, message, err);
      await d.produceDeadLetter(dl);
      table = DEAD_LETTERS_TABLE;
      row = deadLetterRow(dl);
    }
    try {
      const token = (t: string) => dedupToken(t, topic, batch.partition, offset, offset);
      const rejection = await insertByToken(ctx, table, [row], token(table));
      if (rejection !== undefined) {
        // One message is one row here, and the message is at hand: raw is its bytes.
        const dl = pipeline.toDeadLetter(topic, message, rejection, REASON.insertRejected);
        await d.produceDeadLetter(dl);
        await retryWhileOwned(ctx, `insert ${DEAD_LETTERS_TABLE}`, () =>
          ctx.store.insert(DEAD_LETTERS_TABLE, [deadLetterRow(dl)], token(DEAD_LETTERS_TABLE)),
        );
      }
      await d.runtime.commit(topic, batch.partition, offset + 1n, null);
    } catch (err) {
      if (err instanceof LostPartitionError) return;
      d.log.warn({ err: (err as Error).message, partition: batch.partition }, 'stats commit refused');
      return;
    }
    ctl.resolveOffset(message.offset);
    await d.runtime.heartbeat();
  }
}
