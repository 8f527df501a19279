// The processor as the CLI runs it (processor/src/run.ts: config, memory budget, Kafka,
// metrics, SIGTERM), against Debian's clickhouse-server 18.16 like processor-outage.test.ts:
// that server predates the migrations' types and deduplication tokens, so the test creates
// minimal tables with the processor's columns and the client is told the server can't
// deduplicate. Everything else is the CLI's path, so a test can run it as a process of its
// own (in a memory cgroup) and stop ClickHouse under it.
//
//   tsx test/support/processor-child.ts --clickhouse-url URL --database DB [--set key=value ...]
import { loadConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { setLogLevel } from '../../common/log.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { processorMemory, runProcessor } from '../../processor/src/run.js';

function option(name: string): string {
  const i = process.argv.indexOf(name);
  const value = i < 0 ? undefined : process.argv[i + 1];
  if (value === undefined) throw new ConfigError(`${name} is required`);
  return value;
}

async function main(): Promise<void> {
  const sets = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--set' ? [a] : []));
  const url = option('--clickhouse-url');
  const config = loadConfig({ overrides: [...sets, `clickhouse.url=${url}`] });
  setLogLevel(config.log.level);
  const memory = processorMemory(config);
  const clickhouse = await createClickHouse({
    kind: 'server',
    url,
    database: option('--database'),
    allowWithoutDedupToken: true,
  });
  await runProcessor(config, clickhouse, memory, 30_000);
}

main().catch((err: unknown) => {
  process.stderr.write(`processor-child: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
