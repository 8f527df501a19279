// `./ktrail query "SELECT ..."`: runs SQL against the running pipeline's store through the
// processor's ClickHouse-compatible endpoint (chDB allows one process per data directory).
// Reads SQL from the arguments or stdin; prints the result as the server formats it
// (PrettyCompact by default for people, any FORMAT clause wins).
import { readFileSync } from 'node:fs';

const url =
  process.env.KTRAIL_QUERY_URL ?? `http://127.0.0.1:${process.env.KTRAIL_PROCESSOR_QUERY_PORT ?? 8124}/`;
const sql = process.argv.slice(2).join(' ').trim() || readFileSync(0, 'utf8').trim();
if (!sql) {
  console.error('usage: ./ktrail query "SELECT ..."   (or SQL on stdin)');
  process.exit(2);
}
try {
  const res = await fetch(`${url}?default_format=PrettyCompactMonoBlock`, { method: 'POST', body: sql });
  process.stdout.write(await res.text());
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(
    `cannot reach the query endpoint at ${url}: ${(err as Error).message} (is ./ktrail up running?)`,
  );
  process.exit(1);
}
