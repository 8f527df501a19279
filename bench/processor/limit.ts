// The processor bench's limit: chDB inserting the drain's rows straight from memory (no Kafka,
// no decode), the same mix, joined with its containers' records beforehand, each kind into its
// own table, cut as the drain cuts it: every cutRows events, one insert per table and cut.
import type { ClickHouseClient } from '@clickhouse/client';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { EventColumns, kindLayout } from '../../processor/src/event-columns.js';
import { joinedIdentity } from '../../processor/src/join-identity.js';
import {
  containerMetaFromRecord,
  messageSource,
  tableForKind,
  wallClockNs,
} from '../../processor/src/rows.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { containerRecord, SyntheticNode } from './synthetic.js';
import { cpuWindow } from './threads.js';

export interface LimitShape {
  events: number;
  perMessage: number;
  cutRows: number;
  /** Share of the events that are process exits. */
  exitShare: number;
}

const codec = createProcessorCodec();
const LIMIT_NODE = 'limit-node';
const limitContainers = new Map(
  Array.from({ length: 8 }, (_, i) => {
    const meta = containerMetaFromRecord(
      containerRecord(LIMIT_NODE, i) as unknown as Record<string, unknown>,
    );
    return [meta.cgroupId, meta] as const;
  }),
);

/** Each cut's rows as columns (event-columns.ts), as the processor holds them. */
function limitCuts(shape: LimitShape): Map<string, EventColumns>[] {
  const { events, perMessage, cutRows, exitShare } = shape;
  const node = new SyntheticNode({ node: LIMIT_NODE, containers: 8, exitShare, realistic: true });
  const cuts: Map<string, EventColumns>[] = [];
  for (let i = 0; i < events / perMessage; i++) {
    if ((i * perMessage) % cutRows === 0) cuts.push(new Map());
    const cut = cuts[cuts.length - 1] as Map<string, EventColumns>;
    const batch = codec.decodeEventBatch(node.next(perMessage));
    const src = messageSource(batch, 0, String(i), false);
    batch.events.forEach((event, j) => {
      const table = tableForKind(event.kind);
      let cols = cut.get(table);
      if (cols === undefined) {
        cols = new EventColumns(kindLayout(event));
        cut.set(table, cols);
      }
      const r = cols.add(src, event, wallClockNs(batch, event.tsNs), j);
      const meta = limitContainers.get(event.cgroupId);
      if (meta !== undefined) cols.setJoin(r, joinedIdentity(meta));
    });
  }
  return cuts;
}

/**
 * One limit run: the cuts built, then inserted once `settled` (no merge of the drain's parts
 * running); CPU of the process over the inserts. Waits for its own merges before returning.
 */
export async function runLimit(
  ch: ClickHouseClient,
  shape: LimitShape,
  round: number,
  settled: () => Promise<void>,
) {
  const cuts = limitCuts(shape);
  const rows = cuts.reduce((n, cut) => n + [...cut.values()].reduce((m, r) => m + r.length, 0), 0);
  const sink = clickHouseSink(ch);
  await settled();
  const window = cpuWindow();
  for (const [k, cut] of cuts.entries())
    for (const [table, columns] of cut)
      await sink.insert(table, columns, `bench-limit:${Date.now()}:${round}:${k}:${table}`);
  const { cpuS, wallS, byThread } = window.end();
  const rate = rows / wallS;
  const perCpuS = rows / cpuS;
  console.log(
    `[bench] chDB insert from memory: ${Math.round(rate)} rows/s, ${Math.round(perCpuS)} rows per CPU-second`,
  );
  const result = {
    rate,
    perCpuS,
    byThread,
    inserts: cuts.reduce((n, cut) => n + cut.size, 0),
    cuts: cuts.length,
  };
  cuts.length = 0;
  await settled();
  return result;
}
