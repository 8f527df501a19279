import { Counter } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRegistry, startHttpServer } from '../../common/metrics.js';

describe('metrics endpoint', () => {
  it('serves /metrics, /healthz and a /readyz that follows readiness', async () => {
    const registry = createRegistry('test', 'node-a');
    const counter = new Counter({ name: 'ktrail_test_total', help: 'test', registers: [registry] });
    counter.inc(3);
    let ready = false;
    const http = await startHttpServer({ port: 0, registry, ready: () => ready });
    try {
      const base = `http://127.0.0.1:${http.port}`;
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/ktrail_test_total\{component="test",node="node-a"\} 3/);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      ready = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      await http.close();
    }
  });
});
