// Prometheus metrics and the liveness/readiness endpoints every ktrail process serves.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

const PREFIX = 'ktrail_';
/**
 * The event-loop delay histogram samples every 100 ms by default, not prom-client's 10 ms:
 * each sample is a wakeup of the loop, and 100 a second cost the collector ~0.8% of a core
 * when idle. Stalls still show: one delays the next sample.
 */
const LAG_RESOLUTION_MS = 100;
const UNUSED_LAG_RESOLUTION_MS = 60_000;

export interface RegistryOptions {
  /**
   * Event-loop lag sampling period. A stall at least this long always shows; a shorter one
   * only when a sample falls due during it.
   */
  lagResolutionMs?: number;
}

export function createRegistry(component: string, node: string, options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component, node });
  collectDefaultMetrics({
    register: registry,
    prefix: PREFIX,
    // prom-client's own histogram stays enabled after registerEventLoopLag replaces its
    // gauges: sampled once a minute, it costs no wakeups worth counting.
    eventLoopMonitoringPrecision: UNUSED_LAG_RESOLUTION_MS,
  });
  registerEventLoopLag(registry, options.lagResolutionMs ?? LAG_RESOLUTION_MS);
  return registry;
}

/**
 * ktrail_nodejs_eventloop_lag_{min,max,mean,p50,p90,p99}_seconds as the lag itself. Node's
 * histogram records the whole time between two samples, so prom-client's versions read the
 * sampling interval (0.1 s by default) when the loop is idle, which looks like a stalled loop. These
 * subtract it, and cover the time since the last scrape.
 */
function registerEventLoopLag(registry: Registry, resolutionMs: number): void {
  const name = (stat: string) => `${PREFIX}nodejs_eventloop_lag_${stat}_seconds`;
  for (const m of registry.getMetricsAsArray())
    if (m.name.startsWith(`${PREFIX}nodejs_eventloop_lag_`)) registry.removeSingleMetric(m.name);
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  const lag = (ns: number) => Math.max(0, ns / 1e9 - resolutionMs / 1000);
  const stats: [string, string, () => number][] = [
    ['min', 'smallest', () => histogram.min],
    ['max', 'largest', () => histogram.max],
    ['mean', 'mean', () => histogram.mean],
    ['p50', 'median', () => histogram.percentile(50)],
    ['p90', '90th percentile of the', () => histogram.percentile(90)],
    ['p99', '99th percentile of the', () => histogram.percentile(99)],
  ];
  // A scrape collects these in this order; the last one starts the next window.
  stats.forEach(([stat, help, read], i) => {
    new Gauge({
      name: name(stat),
      help: `${help} event-loop lag since the last scrape, in seconds (the sampling interval subtracted)`,
      registers: [registry],
      collect() {
        this.set(histogram.count === 0 ? 0 : lag(read()));
        if (i === stats.length - 1) histogram.reset();
      },
    });
  });
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

/**
 * The metrics `names` asks for (all when empty), as Prometheus text. `?name=` lets a frequent
 * reader (`./ktrail up`'s status, every 2 s) read a few counters without collecting the rest:
 * the event-loop lag gauges would otherwise start a new window at each of its reads.
 */
async function metricsText(registry: Registry, names: string[]): Promise<string> {
  if (names.length === 0) return registry.metrics();
  const known = names.filter((n) => registry.getSingleMetric(n) !== undefined);
  const parts = await Promise.all(known.map((n) => registry.getSingleMetricAsString(n)));
  return parts.length === 0 ? '' : `${parts.join('\n\n')}\n`;
}

/** /metrics (Prometheus text; `?name=a&name=b` for only those), /healthz (liveness), /readyz (readiness). */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { registry, ready, live = () => true } = options;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/metrics') {
      metricsText(registry, url.searchParams.getAll('name')).then(
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
