// chDB's own insert rate, straight from memory: the ceiling the processor benchmark compares
// itself with ("the limit"). Rows go through the real writer (JSONEachRow + token) into the
// real schema, so the number includes serialization, parsing, MVs and merges' first step.
//   tsx processor/src/clickhouse/bench-insert.ts [--rows 100000] [--batches 3] [--path dir] [--compression]
// --compression also prints bytes per row and the compression ratio per column afterwards
// (synthetic data: a sanity check of the codecs, not a forecast for real data).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { dateTime64 } from '../rows.js';
import { createClickHouse } from './client.js';
import { migrate } from './migrate.js';
import { insertBatch } from './writer.js';

export type InsertBenchResult = {
  table: string;
  /** How the writer sent the rows (Native for chDB event tables). */
  format: string;
  rowsPerBatch: number;
  batches: number;
  /** Serialization and insert, as the processor pays them. */
  insertMs: number;
  rowsPerSec: number;
};

const NOW_NS = BigInt(Date.now()) * 1_000_000n;

/**
 * Synthetic rows of one kind, with realistic cardinality (1000 cgroups on 10 nodes), in the
 * form the processor's rows.ts builds them: one literal and then the kind's fields (a fixed shape), u64
 * as numbers (rows.ts u64Value), the time as DateTime64 text. Rows spread together from a
 * shared part encoded ~13x slower (13 us a row), which made this measure JavaScript, not chDB.
 */
export function syntheticRows(table: 'cpu_sample' | 'proc_exec', n: number, offset: number): object[] {
  const rows = new Array<object>(n);
  for (let i = 0; i < n; i++) {
    const k = offset + i;
    // The common columns in one literal, the kind's own assigned after, as rows.ts does:
    // every row of a kind gets the same shape.
    const row: Record<string, unknown> = {
      node: `node-${k % 10}`,
      boot_id: `boot-${k % 10}`,
      time: dateTime64(NOW_NS - BigInt(n - i) * 1_000_000n),
      ts_ns: 1_000_000_000_000 + k * 1_000_000,
      cgroup_id: 10_000 + (k % 1000),
      container_id: `c${k % 1000}`,
      container_name: `svc-${k % 1000}`,
      image: `img-${k % 50}`,
      join_state: 'joined',
      kafka_partition: k % 12,
      kafka_offset: String(k),
    };
    if (table === 'cpu_sample') {
      row.pid = 0;
      row.tgid = 0;
      row.cpu_ns = k % 1_000_000_000;
      row.switches = k % 500;
      row.interval_ns = 1_000_000_000;
    } else {
      row.pid = 1000 + (k % 30_000);
      row.tgid = row.pid;
      row.ppid = 1;
      row.uid = 0;
      row.gid = 0;
      row.args_count = 3;
      row.args_size = 24;
      row.comm = 'sh';
      row.filename = '/bin/sh';
      row.args = ['sh', '-c', `echo ${k % 100}`];
    }
    rows[i] = row;
  }
  return rows;
}

export async function benchInsert(
  client: ClickHouseClient,
  table: 'cpu_sample' | 'proc_exec',
  rowsPerBatch: number,
  batches: number,
): Promise<InsertBenchResult> {
  let insertMs = 0;
  let format = '';
  for (let b = 0; b < batches; b++) {
    const rows = syntheticRows(table, rowsPerBatch, b * rowsPerBatch);
    const t0 = performance.now();
    const result = await insertBatch(client, {
      table,
      rows,
      dedupToken: `${table}:bench:0:${b * rowsPerBatch}-${(b + 1) * rowsPerBatch - 1}`,
    });
    insertMs += performance.now() - t0;
    format = result.format;
  }
  const total = rowsPerBatch * batches;
  return {
    table,
    format,
    rowsPerBatch,
    batches,
    insertMs: Math.round(insertMs),
    rowsPerSec: Math.round(total / (insertMs / 1000)),
  };
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = Number(arg('rows', '100000'));
  const batches = Number(arg('batches', '3'));
  const temp = mkdtempSync(join(tmpdir(), 'ktrail-bench-chdb-'));
  const path = arg('path', temp);
  const client = await createClickHouse({ kind: 'chdb', path, database: 'bench' });
  try {
    await migrate(client);
    for (const table of ['cpu_sample', 'proc_exec'] as const) {
      console.log(JSON.stringify(await benchInsert(client, table, rows, batches)));
    }
    if (process.argv.includes('--compression')) {
      for (const table of ['cpu_sample', 'proc_exec']) {
        await client.command({ query: `OPTIMIZE TABLE bench.${table} FINAL` });
        const rs = await client.query({
          query: `SELECT name, compression_codec AS codec, data_compressed_bytes AS packed, data_uncompressed_bytes AS raw
                  FROM system.columns WHERE database = 'bench' AND table = '${table}' ORDER BY packed DESC`,
          format: 'JSONEachRow',
        });
        const cols = await rs.json<{ name: string; codec: string; packed: string; raw: string }>();
        const packed = cols.reduce((a, c) => a + Number(c.packed), 0);
        const raw = cols.reduce((a, c) => a + Number(c.raw), 0);
        const n = rows * batches;
        console.log(
          `${table}: ${(packed / n).toFixed(1)} bytes/row on disk, ${(raw / n).toFixed(1)} uncompressed`,
        );
        for (const c of cols) {
          const ratio = Number(c.packed) === 0 ? 0 : Number(c.raw) / Number(c.packed);
          console.log(
            `  ${c.name.padEnd(16)} ${(c.codec || 'default (LZ4)').padEnd(28)} x${ratio.toFixed(1)}`,
          );
        }
      }
    }
  } finally {
    await client.close();
    if (path === temp) rmSync(temp, { recursive: true, force: true });
  }
}
