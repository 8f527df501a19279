// The processor's RowSink: one insert per (table, batch), always with the batch's
// deduplication token, through the ClickHouse writer's insertBatch (table qualification,
// old servers, chDB's native insert and error classification live there). One attempt
// per call: the processor's own retry loop retries, since it must check between attempts
// that it still owns the partition and keep its group session alive.
import type { ClickHouseClient } from '@clickhouse/client';
import { insertBatch } from './clickhouse/writer.js';
import type { Row } from './partition-batch.js';
import type { RowSink } from './processor.js';

export function clickHouseSink(client: ClickHouseClient): RowSink {
  return {
    async insert(table: string, rows: Row[], dedupToken: string): Promise<void> {
      await insertBatch(client, { table, rows, dedupToken }, { retry: { maxAttempts: 1 } });
    },
  };
}
