// Event rows held as columns (processor/src/event-columns.ts) on the real chDB engine and the
// real event tables: for every event kind, the Native block copied from the columns is the
// same bytes as the row pass over the same rows as objects, and rows inserted from columns
// read back as the same rows sent as JSONEachRow. Rows carry every join state, messages of
// two nodes, and values at the edges of their columns.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { encodeEventColumns, encodeNativeBlock } from '../../processor/src/clickhouse/native-format.js';
import { columnTypes, insertBatch, toJsonEachRow } from '../../processor/src/clickhouse/writer.js';
import { asRows, EventColumns } from '../../processor/src/event-columns.js';
import { HOST_JOIN, joinedIdentity, pendingIdentity } from '../../processor/src/join-identity.js';
import type { ContainerMeta } from '../../processor/src/metadata-table.js';
import { PartitionBatch } from '../../processor/src/partition-batch.js';
import { type DecodedEvent, messageSource, wallClockNs } from '../../processor/src/rows.js';
import { sampleEvents } from '../../schemas/samples.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { ONE_MESSAGE } from '../support/event-row.js';

function meta(containerId: string, over: Partial<ContainerMeta> = {}): ContainerMeta {
  return {
    node: 'n1',
    cgroupId: 42n,
    containerId,
    runtime: 'containerd',
    cgroupPath: `/kubepods/pod1/${containerId}`,
    name: `app-${containerId}`,
    image: 'registry/app:1',
    labels: { 'io.kubernetes.container.name': 'app' },
    pod: 'app-7d9f',
    podUid: 'uid-1',
    namespace: 'shop',
    workloadKind: 'Deployment',
    workload: 'app',
    runtimeNamespace: 'k8s.io',
    startedAtNs: 1n,
    stoppedAtNs: 0n,
    updatedAtNs: 1n,
    state: 'RUNNING',
    ...over,
  };
}

/**
 * A batch of every sample kind: per kind three messages (two nodes) of three events each,
 * their u64 fields at 0, 2^53 + 1 and 2^64 - 1 in turn; each kind's rows joined, pending
 * (known by path) and the host's in turn.
 */
function batchOfEveryKind(): PartitionBatch {
  const batch = new PartitionBatch(ONE_MESSAGE);
  const identities = [joinedIdentity(meta('c1')), pendingIdentity(meta('c2', { name: '' })), HOST_JOIN];
  const u64s = [0n, 9_007_199_254_740_993n, 0xffff_ffff_ffff_ffffn];
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  let offset = 100;
  for (const sample of sampleEvents()) {
    for (let m = 0; m < 3; m++) {
      const events = [0, 1, 2].map((k) => {
        const ev: Record<string, unknown> = { ...sample, tsNs: BigInt(1_000 * k + m) };
        for (const [field, v] of Object.entries(sample))
          if (typeof v === 'bigint' && field !== 'tsNs') ev[field] = u64s[(k + m) % 3];
        return ev as unknown as DecodedEvent;
      });
      const message = {
        node: `node-${m % 2}`,
        bootId: `boot-${m}`,
        collectorVersion: 'test',
        sequence: BigInt(m),
        producedAtNs: nowNs,
        bootEpochNs: nowNs,
        events,
      };
      const src = messageSource(message, 3, String(offset++), false);
      events.forEach((ev, i) => {
        const cols = batch.addEvent(ev.kind, src, ev, wallClockNs(message, ev.tsNs), i);
        cols.setJoin(cols.length - 1, identities[(i + m) % 3] as (typeof identities)[number]);
      });
    }
  }
  return batch;
}

function sample(kind: string): Record<string, unknown> {
  const found = sampleEvents().find((e) => e.kind === kind);
  if (found === undefined) throw new Error(`no sample of ${kind}`);
  return found as unknown as Record<string, unknown>;
}

describe('event rows as columns, on the real event tables', () => {
  let ch: TestChdb;
  beforeAll(async () => {
    ch = await createTestChdb('columns');
    await migrate(ch.client);
  });
  afterAll(async () => {
    await ch?.close();
  });

  it('copies the same Native block from columns as the row pass writes from the rows', async () => {
    const batch = batchOfEveryKind();
    let kinds = 0;
    for (const [table, rows] of batch.tables) {
      if (!(rows instanceof EventColumns)) continue;
      const types = await columnTypes(ch.client, `${ch.database}.${table}`);
      const fromRows = encodeNativeBlock(asRows(rows), types);
      const copied = encodeEventColumns(rows, types);
      // Array fields are left to the row pass; every other kind is copied from its columns.
      const hasArray = Object.values(sample(table)).some(Array.isArray);
      expect(copied === undefined, table).toBe(hasArray);
      expect(encodeNativeBlock(rows, types), table).toEqual(fromRows);
      if (copied === undefined) continue;
      expect(copied.columns, table).toEqual(fromRows?.columns);
      expect(copied.block.equals(fromRows?.block as Buffer), table).toBe(true);
      kinds++;
    }
    expect(kinds).toBeGreaterThanOrEqual(sampleEvents().length - 2);
  });

  it('reads back rows inserted from columns as the same rows sent as JSONEachRow', async () => {
    const batch = batchOfEveryKind();
    const rawInsert = describeClickHouse(ch.client)?.rawInsert;
    if (rawInsert === undefined) throw new Error('a chDB client has rawInsert');
    const db = ch.database;
    for (const [table, rows] of batch.tables) {
      if (!(rows instanceof EventColumns)) continue;
      const read = () =>
        ch.rows<Record<string, unknown>>(
          `SELECT * FROM ${db}.${table} WHERE kafka_partition = 3 ORDER BY kafka_offset, time, join_state`,
        );
      await insertBatch(ch.client, { table, rows, dedupToken: `columns:${table}` });
      const viaColumns = await read();
      await ch.client.command({ query: `TRUNCATE TABLE ${db}.${table}` });
      await rawInsert({
        table: `${db}.${table}`,
        values: toJsonEachRow(asRows(rows)),
        format: 'JSONEachRow',
        settings: { insert_deduplication_token: `json:${table}` },
      });
      const viaJson = await read();
      expect(viaColumns.length, table).toBe(rows.length);
      expect(viaColumns, table).toEqual(viaJson);
    }
  });
});
