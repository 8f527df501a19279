// Opens an embedded store as the processor does (createClickHouse, migrate, then
// releaseEngineStartupPages), then inserts and queries, and prints one JSON line: the engine
// library's resident bytes at each step and the query's answer. In a process of its own: the
// test process may map libchdb.so for other tests, and the figures must be this store's.
// Usage: tsx test/support/engine-pages-child.ts <chdbPath>

import { residentBytesOfFile } from '../../common/mapped-pages.js';
import {
  createClickHouse,
  ENGINE_LIBRARY,
  releaseEngineStartupPages,
} from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';

const [path] = process.argv.slice(2);
if (path === undefined) {
  console.error('usage: engine-pages-child.ts <chdbPath>');
  process.exit(2);
}
const resident = () => residentBytesOfFile(ENGINE_LIBRARY);
const client = await createClickHouse({ kind: 'chdb', path, database: 'ktrail' });
await migrate(client, {});
const opened = resident();
const released = releaseEngineStartupPages(client);
const afterRelease = resident();
await client.command({
  query: 'CREATE TABLE ktrail.page_probe (k UInt64, v String) ENGINE = MergeTree ORDER BY k',
});
for (let i = 0; i < 20; i++)
  await client.command({
    query: `INSERT INTO ktrail.page_probe SELECT number, toString(number) FROM numbers(${i * 10_000}, 10000)`,
  });
await client.command({ query: 'OPTIMIZE TABLE ktrail.page_probe FINAL' });
const answer = await (
  await client.query({
    query: 'SELECT count() AS n, sum(k) AS s FROM ktrail.page_probe',
    format: 'JSONEachRow',
  })
).json();
const afterUse = resident();
console.log(JSON.stringify({ opened, released, afterRelease, afterUse, answer }));
await client.close();
process.exit(0);
