// The processor's RowSink over the ClickHouse writer: every insert carries its batch token.
// The writer retries a few times itself; the processor's own loop retries for as long as
// it still owns the partition, heartbeating the group meanwhile.
import type { ClickHouseClient } from '@clickhouse/client';
import { insertBatch } from './clickhouse/writer.js';
import type { Row } from './partition-batch.js';
import type { RowSink } from './processor.js';

export function clickHouseSink(client: ClickHouseClient): RowSink {
  return {
    async insert(table: string, rows: Row[], dedupToken: string): Promise<void> {
      await insertBatch(
        client,
        { table, rows, dedupToken },
        { retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 1_000 } },
      );
    },
  };
}
