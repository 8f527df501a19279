// `./ktrail query "SELECT ..."`: runs SQL against the running pipeline's store through the
// processor's ClickHouse-compatible endpoint (chDB allows one process per data directory).
// Reads SQL from the arguments or stdin; prints the result as the server formats it
// (PrettyCompact by default for people, any FORMAT clause wins). The endpoint wants the
// token the processor wrote (0600) beside its store; the same settings find it here
// (KTRAIL_CLICKHOUSE_CHDB_PATH, KTRAIL_PROCESSOR_QUERY_TOKEN_FILE, KTRAIL_PROCESSOR_QUERY_PORT).
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../common/config.js';
import { queryEndpointAccess } from '../../processor/src/query-endpoint.js';

const sql = process.argv.slice(2).join(' ').trim() || readFileSync(0, 'utf8').trim();
if (!sql) {
  console.error('usage: ./ktrail query "SELECT ..."   (or SQL on stdin)');
  process.exit(2);
}
let access: { url: string; token: string };
try {
  access = queryEndpointAccess(loadConfig());
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
try {
  const res = await fetch(`${access.url}?default_format=PrettyCompactMonoBlock`, {
    method: 'POST',
    headers: { authorization: `Bearer ${access.token}` },
    body: sql,
  });
  process.stdout.write(await res.text());
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(
    `cannot reach the query endpoint at ${access.url}: ${(err as Error).message} (is ./ktrail up running?)`,
  );
  process.exit(1);
}
