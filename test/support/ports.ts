// Free loopback ports for services a test starts on its own (a private broker, a private
// clickhouse-server): asked of the kernel (port 0), so another process can still take one
// before the test does; callers use them at once.
import { type AddressInfo, createServer, type Server } from 'node:net';

/** `n` distinct ports free on 127.0.0.1 right now. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
