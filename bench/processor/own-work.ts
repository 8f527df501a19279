// Two measures of the processor bench that need no live insert path of their own:
//  - the processor's own work: a RowSink that builds each insert's Native block (what the
//    chDB store sends) and drops it, so the CPU is decode, join, rows and encoding only;
//  - bytes on disk per event after merges, over what the bench's runs left in the store.
import type { ClickHouseClient } from '@clickhouse/client';
import { encodeNativeBlock } from '../../processor/src/clickhouse/native-format.js';
import { columnTypes } from '../../processor/src/clickhouse/writer.js';
import type { RowSink } from '../../processor/src/processor.js';

/** A sink that encodes every insert as the chDB store would and inserts nothing; counts event rows. */
export function encodeOnlySink(ch: ClickHouseClient, eventTables: readonly string[]) {
  const counted = { rows: 0, blocks: 0, bytes: 0 };
  const sink: RowSink = {
    async insert(table, rows) {
      if (rows.length === 0) return;
      const block = encodeNativeBlock(rows, await columnTypes(ch, `ktrail.${table}`));
      counted.blocks++;
      counted.bytes += block?.block.length ?? 0;
      if (eventTables.includes(table)) counted.rows += rows.length;
    },
    async writtenOffsets() {
      return new Set();
    },
  };
  return { sink, counted };
}

/**
 * Merges every event table down (OPTIMIZE FINAL) and divides the bytes of their active parts
 * by the rows they hold: what one event costs on disk once the background merges are done.
 */
export async function bytesPerEvent(
  ch: ClickHouseClient,
  tables: readonly string[],
): Promise<{ events: number; bytes: number; perEvent: number; byTable: Array<[string, number, number]> }> {
  for (const t of tables) await ch.command({ query: `OPTIMIZE TABLE ktrail.${t} FINAL` });
  const rs = await ch.query({
    query: `SELECT table, sum(rows) AS r, sum(bytes_on_disk) AS b FROM system.parts
            WHERE database = 'ktrail' AND active AND table IN ({tables:Array(String)}) GROUP BY table`,
    query_params: { tables },
    format: 'JSONEachRow',
  });
  const rows = await rs.json<{ table: string; r: string; b: string }>();
  const byTable = rows.map((r) => [r.table, Number(r.r), Number(r.b)] as [string, number, number]);
  const events = byTable.reduce((s, [, r]) => s + r, 0);
  const bytes = byTable.reduce((s, [, , b]) => s + b, 0);
  return { events, bytes, perEvent: bytes / events, byTable };
}
