// Runs one query on a chDB directory after the processor that owned it exited (chDB allows
// one process per data directory) and prints the rows as one JSON array line.
// Usage: tsx test/support/chdb-rows.ts <chdbPath> <sql>
import { createClickHouse } from '../../processor/src/clickhouse/client.js';

const [path, query] = process.argv.slice(2);
if (path === undefined || query === undefined) {
  console.error('usage: chdb-rows.ts <chdbPath> <sql>');
  process.exit(2);
}
const client = await createClickHouse({ kind: 'chdb', path, database: 'ktrail' });
const rows = await (await client.query({ query, format: 'JSONEachRow' })).json();
console.log(JSON.stringify(rows));
await client.close();
process.exit(0);
