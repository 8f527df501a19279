// Event rows as the processor builds them (rows.ts buildMessageRows), for tests of what reads
// them: the envelope and Kafka coordinates come from a message, the join columns from a join.
import type { EventRow } from '../../processor/src/partition-batch.js';
import { buildMessageRows, type DecodedEvent } from '../../processor/src/rows.js';
import { sampleEvents } from '../../schemas/samples.js';

export interface TestRowOptions {
  node?: string;
  bootId?: string;
  /** The event's wall-clock ns (the `time` column). */
  timeNs?: bigint;
  partition?: number;
  offset?: string;
}

/**
 * One event row of kind `kind`: the schema's sample event of that kind with `fields`
 * (camelCase, as decoded) over it, joined with nothing.
 */
export function testEventRow(
  kind: string,
  fields: Record<string, unknown> = {},
  opts: TestRowOptions = {},
): EventRow {
  const timeNs = opts.timeNs ?? 1_000_000_000n;
  const sample = sampleEvents().find((e) => e.kind === kind);
  if (sample === undefined) throw new Error(`no sample event of kind ${kind}`);
  const event = { ...sample, tsNs: 0n, ...fields } as unknown as DecodedEvent;
  const tsNs = event.tsNs;
  const batch = {
    node: opts.node ?? 'n1',
    bootId: opts.bootId ?? 'boot-1',
    collectorVersion: 'test',
    sequence: 1n,
    producedAtNs: timeNs,
    bootEpochNs: timeNs - tsNs,
    events: [event],
  };
  const built = buildMessageRows(batch, opts.partition ?? 0, opts.offset ?? '0', false);
  return built.rows[0] as EventRow;
}
