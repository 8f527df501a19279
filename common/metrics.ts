// Prometheus metrics and the liveness/readiness endpoints every ktrail process serves.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createRegistry(component: string, node: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component, node });
  // The event-loop lag histogram samples every 100 ms, not prom-client's 10 ms: each sample
  // is a wakeup of the loop, and 100 a second cost the collector ~0.8% of a core when idle
  // (measured; its whole budget at 10k events/s is 5%). Stalls still show: one delays the next sample.
  collectDefaultMetrics({ register: registry, prefix: 'ktrail_', eventLoopMonitoringPrecision: 100 });
  return registry;
}

export interface HttpServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** Readiness: true once the process does its job (connected, assigned, caught up). */
  ready: () => boolean;
  /** Liveness: false when the process is wedged and should be restarted. Default: always live. */
  live?: () => boolean;
}

export interface HttpServerHandle {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** /metrics (Prometheus text), /healthz (liveness), /readyz (readiness). */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { registry, ready, live = () => true } = options;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' ? live() : ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'not ready\n');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  server.unref();
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
