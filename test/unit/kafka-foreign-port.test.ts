// Two checkouts on one machine never share a broker: when this checkout's broker port is held
// by a process it did not start, the tests' ensureKafka() says so (and how to get out of it)
// instead of failing on the status script's exit code.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureKafka } from '../support/kafka.js';

describe('ensureKafka with the port held by another process', () => {
  let server: Server | undefined;
  const names = ['KTRAIL_KAFKA_PORT', 'KTRAIL_KAFKA_BROKERS', 'KTRAIL_KAFKA_CACHE'] as const;
  const saved = names.map((name) => [name, process.env[name]] as const);
  afterEach(async () => {
    if (server !== undefined) await new Promise((r) => server?.close(r));
    const cache = process.env.KTRAIL_KAFKA_CACHE;
    if (cache?.includes('ktrail-foreign-port-')) rmSync(cache, { recursive: true, force: true });
    for (const [name, value] of saved)
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
  });

  it('names the held port and the way out', async () => {
    const listener = createServer();
    server = listener;
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const port = (listener.address() as { port: number }).port;
    process.env.KTRAIL_KAFKA_PORT = String(port);
    delete process.env.KTRAIL_KAFKA_BROKERS;
    // A checkout of its own: a broker this run's tests started elsewhere is not "ours" here.
    process.env.KTRAIL_KAFKA_CACHE = mkdtempSync(join(tmpdir(), 'ktrail-foreign-port-'));
    await expect(ensureKafka()).rejects.toThrow(
      new RegExp(
        `127\\.0\\.0\\.1:${port} is held by a process this checkout did not start.*KTRAIL_KAFKA_PORT`,
      ),
    );
  });
});
