// The processor's RowSink: one JSONEachRow insert per (table, batch), always with the
// batch's deduplication token. Rows arrive JSON-safe (u64 values as decimal strings), so
// the client serialises them as they are.
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
  return {
    async insert(table: string, rows: Row[], dedupToken: string): Promise<void> {
      const qualified = table.includes('.') || info === undefined ? table : `${info.database}.${table}`;
      try {
        await client.insert({
          table: qualified,
          values: rows,
          format: 'JSONEachRow',
          clickhouse_settings: info?.dedupToken === false ? {} : { insert_deduplication_token: dedupToken },
        });
      } catch (err) {
        throw classifyClickHouseError(err, { table: qualified, dedupToken, rows: rows.length });
      }
    },
  };
}
