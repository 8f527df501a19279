// Reads a chDB store after the processor that owns it exited (chDB allows one process per
// data directory) and prints, as one JSON line, per table: rows and distinct events.
// Usage: tsx bench/processor/count-rows.ts <chdbPath> <database> [table ...]
import { createClickHouse } from '../../processor/src/clickhouse/client.js';

const [path, database, ...tables] = process.argv.slice(2);
if (path === undefined || database === undefined) {
  console.error('usage: count-rows.ts <chdbPath> <database> [table ...]');
  process.exit(2);
}
const client = await createClickHouse({ kind: 'chdb', path, database });
const out: Record<string, { rows: number; distinct: number }> = {};
for (const table of tables.length > 0 ? tables : ['cpu_sample', 'proc_exit']) {
  const rs = await client.query({
    query: `SELECT count() AS rows, uniqExact(node, boot_id, ts_ns) AS distinct FROM ${database}.${table}`,
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ rows: string; distinct: string }>();
  out[table] = { rows: Number(row?.rows ?? 0), distinct: Number(row?.distinct ?? 0) };
}
console.log(JSON.stringify(out));
await client.close();
process.exit(0);
