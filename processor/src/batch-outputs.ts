// A cut's side outputs: alerts and enriched events built from its rows (a message whose
// output can't be built becomes a dead letter), then published with its dead letters; an
// output that is down is skipped and what it skipped comes back as losses.
import type { Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { type Alert, AlertEngine } from './alerts.js';
import { toJsonEachRow } from './clickhouse/writer.js';
import { boundedDeadLetter, REASON } from './dead-letters.js';
import { enrichedMessages } from './enriched.js';
import type { EventColumns } from './event-columns.js';
import { type CutBatch, eventTables, type Row } from './partition-batch.js';
import type { ProcessorCodec, ProcessorStats, ProcessorTopics } from './processor-types.js';
import type { LossRow, MessageSource } from './rows.js';
import { countByKey, type OutputResult, type OutputSend } from './side-outputs.js';
import { LostPartitionError } from './table-insert.js';

/** What building and publishing a partition's outputs needs. */
export interface OutputContext {
  codec: ProcessorCodec;
  topics: ProcessorTopics;
  enrichedTopic: boolean;
  outputs: { publish(send: OutputSend): Promise<OutputResult> };
  partition: number;
  groupId: string;
  alerts: AlertEngine;
  owned(): boolean;
  stats: ProcessorStats;
  log: Logger;
  noteDeadLetter(reason: string, fields: Record<string, unknown>): void;
}

/**
 * The alerts and enriched messages of a cut, built before anything is published. Alert
 * rules and the enriched encoder run per row; a row that makes either throw turns its
 * whole source message into one dead letter (reason output_failed) and leaves it out of
 * the outputs, while its rows stay in ClickHouse. A failure that can't be pinned on a
 * message skips that output for this batch (counted as a loss).
 */
export function buildSideOutputs(
  ctx: OutputContext,
  cut: CutBatch,
  alerts: Alert[],
): { sends: OutputSend[]; deadLetters: DeadLetter[]; losses: LossRow[] } {
  const failed = new Map<string, { error: string; rows: Row[] }>();
  const fail = (offset: string, error: string, rows: Row[]) => {
    const f = failed.get(offset);
    if (f === undefined) failed.set(offset, { error, rows });
    else f.rows.push(...rows);
  };
  const events = eventTables(cut);
  ctx.alerts.beginBatch(alerts);
  for (const [table, cols] of events) {
    if (!AlertEngine.observes(table)) continue;
    for (const row of cols.views()) {
      try {
        ctx.alerts.observe(table, row, alerts);
      } catch (err) {
        fail(row.columns.kafka_offset as string, `alert rules: ${(err as Error).message}`, [row.columns]);
      }
    }
  }
  const losses: LossRow[] = [];
  const sends: OutputSend[] = [];
  const alertMessages: { key: string | null; value: Buffer }[] = [];
  for (const a of alerts) {
    try {
      alertMessages.push({ key: a.node, value: ctx.codec.encodeAlert(a) });
    } catch (err) {
      ctx.log.error(
        { err: (err as Error).message, kind: a.kind, node: a.node },
        'alert not encodable; skipped',
      );
      losses.push({
        node: a.node,
        what: `topic:alerts`,
        reason: 'output_skipped',
        rows: 1,
        detail: 'encode_failed',
      });
    }
  }
  sends.push({
    output: 'alerts',
    topic: ctx.topics.alerts,
    messages: alertMessages,
    events: alertMessages.length,
    eventsByNode: countByKey(alertMessages),
  });
  if (ctx.enrichedTopic) {
    const source = { partition: ctx.partition, firstOffset: cut.firstOffset, lastOffset: cut.lastOffset };
    try {
      const enriched = enrichedMessages(events, source, ctx.codec.encodeEnriched);
      for (const [offset, f] of enriched.failed) fail(offset, `enriched output: ${f.error.message}`, f.rows);
      sends.unshift({
        output: 'enriched',
        topic: ctx.topics.enriched,
        messages: enriched.messages,
        events: enriched.events,
        eventsByNode: enriched.eventsByNode,
      });
    } catch (err) {
      ctx.log.error(
        { err: (err as Error).message, partition: ctx.partition },
        'enriched output not buildable',
      );
      for (const [node, rows] of eventsPerNode(events))
        losses.push({
          node,
          what: 'topic:enriched',
          reason: 'output_skipped',
          rows,
          detail: 'encode_failed',
        });
    }
  }
  const deadLetters: DeadLetter[] = [];
  for (const [offset, f] of failed) {
    ctx.noteDeadLetter(REASON.outputFailed, {
      topic: ctx.topics.events,
      partition: ctx.partition,
      offset,
      err: f.error,
    });
    const raw = Buffer.from(toJsonEachRow(f.rows));
    deadLetters.push(
      boundedDeadLetter(
        {
          topic: ctx.topics.events,
          partition: ctx.partition,
          offset: BigInt(offset),
          key: null,
          consumerGroup: ctx.groupId,
        },
        REASON.outputFailed,
        f.error,
        raw,
      ),
    );
  }
  return { sends, deadLetters, losses };
}

/** Events of a cut per node (rows built from an event). */
function eventsPerNode(events: ReadonlyMap<string, EventColumns>): Map<string, number> {
  const out = new Map<string, number>();
  for (const cols of events.values())
    for (let r = 0; r < cols.length; r++) {
      const node = (cols.sources[cols.msg[r] as number] as MessageSource).node;
      out.set(node, (out.get(node) ?? 0) + 1);
    }
  return out;
}

/**
 * Publishes dead letters, enriched events and alerts; an output that is down is skipped,
 * and what it skipped comes back as losses. An output that just went down raises an alert
 * (published with this batch's alerts, unless the alerts topic is the one down).
 */
export async function publishSideOutputs(
  ctx: OutputContext,
  cut: CutBatch,
  deadLetters: DeadLetter[],
  sends: OutputSend[],
): Promise<LossRow[]> {
  const all: OutputSend[] = [
    {
      output: 'deadletter',
      topic: ctx.topics.deadletter,
      messages: deadLetters.map((d) => ({ key: null, value: ctx.codec.encodeDeadLetter(d) })),
      events: deadLetters.length,
      eventsByNode: new Map([['', deadLetters.length]]),
    },
    ...sends,
  ];
  const losses: LossRow[] = [];
  for (const send of all) {
    if (send.messages.length === 0) continue;
    if (!ctx.owned()) throw new LostPartitionError(`publish ${send.output}`);
    const result = await ctx.outputs.publish(send);
    if (!result.skipped) {
      if (send.output === 'enriched') ctx.stats.enrichedEvents += send.events;
      if (send.output === 'alerts') ctx.stats.alerts += send.events;
      continue;
    }
    for (const [node, rows] of send.eventsByNode)
      losses.push({
        node,
        what: `topic:${send.output}`,
        reason: 'output_skipped',
        rows,
        detail: result.reason,
      });
    if (result.wentDown && send.output !== 'alerts') {
      const alert = outputDownAlert(ctx, cut, send, result.reason);
      const alertsSend = all.find((x) => x.output === 'alerts');
      if (alertsSend !== undefined) {
        alertsSend.messages.push({ key: null, value: ctx.codec.encodeAlert(alert) });
        alertsSend.events++;
        alertsSend.eventsByNode.set('', (alertsSend.eventsByNode.get('') ?? 0) + 1);
      }
    }
  }
  return losses;
}

function outputDownAlert(ctx: OutputContext, cut: CutBatch, send: OutputSend, reason: string): Alert {
  return {
    kind: 'output_skipped',
    node: '',
    container: '',
    containerName: '',
    namespace: '',
    pod: '',
    timeNs: BigInt(Date.now()) * 1_000_000n,
    details: {
      output: send.output,
      topic: send.topic,
      reason,
      partition: String(ctx.partition),
      firstOffset: String(cut.firstOffset),
      lastOffset: String(cut.lastOffset),
    },
  };
}
