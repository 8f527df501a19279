// The processor's RowSink: one insert per (table, batch), always with the batch's
// deduplication token. Rows arrive JSON-safe (u64 values as decimal strings).
//
// Not insertBatch() from ./clickhouse/writer.ts for now: its body goes to the client as a
// non-object-mode stream, which @clickhouse/client 1.x rejects for JSONEachRow ("expected
// Readable Stream with enabled object mode"). Errors are classified with the writer's own
// classifier, so retriable/poison decisions stay in one place.
import type { ClickHouseClient } from '@clickhouse/client';
import { describeClickHouse } from './clickhouse/client.js';
import { classifyClickHouseError } from './clickhouse/writer.js';
import type { Row } from './partition-batch.js';
import type { RowSink } from './processor.js';

export function clickHouseSink(client: ClickHouseClient): RowSink {
  const info = describeClickHouse(client);
  // JSONCompactEachRow is newer than some servers (18.x); a server that knows
  // deduplication tokens (22.x+) or chDB has it.
  const compact = info === undefined || info.dedupToken;
  return {
    async insert(table: string, rows: Row[], dedupToken: string): Promise<void> {
      const qualified = table.includes('.') || info === undefined ? table : `${info.database}.${table}`;
      const settings = info?.dedupToken === false ? {} : { insert_deduplication_token: dedupToken };
      // rows.ts builds every row of a table with the same keys in the same order, so the
      // compact format (values only, about half the bytes and ~1.7x faster for chDB to
      // parse) fits; a batch that breaks the rule, or an old server, gets JSONEachRow.
      const first = rows[0];
      const columns = first === undefined ? [] : Object.keys(first);
      const uniform =
        compact &&
        columns.length > 0 &&
        rows.every((r, i) => i % 997 !== 0 || Object.keys(r).length === columns.length);
      try {
        if (uniform) {
          const values = new Array<unknown[]>(rows.length);
          for (let i = 0; i < rows.length; i++) {
            const r = rows[i] as Row;
            const v = new Array<unknown>(columns.length);
            for (let c = 0; c < columns.length; c++) v[c] = r[columns[c] as string];
            values[i] = v;
          }
          await client.insert({
            table: qualified,
            columns: columns as [string, ...string[]],
            values,
            format: 'JSONCompactEachRow',
            clickhouse_settings: settings,
          });
        } else {
          await client.insert({
            table: qualified,
            values: rows,
            format: 'JSONEachRow',
            clickhouse_settings: settings,
          });
        }
      } catch (err) {
        throw classifyClickHouseError(err, { table: qualified, dedupToken, rows: rows.length });
      }
    },
  };
}
