import { Counter } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRegistry, startHttpServer } from '../../common/metrics.js';

describe('event-loop lag', () => {
  it('reads about 0 when the loop is idle, and a stall when it was blocked', async () => {
    const registry = createRegistry('lag', 'node-a');
    const value = async (stat: string) => {
      const text = await registry.metrics();
      const m = new RegExp(`ktrail_nodejs_eventloop_lag_${stat}_seconds\\{[^}]*\\} ([0-9.e-]+)`).exec(text);
      return Number(m?.[1]);
    };
    await new Promise((r) => setTimeout(r, 1_200)); // an idle loop: samples land on time
    expect(await value('p50')).toBeLessThan(0.05);
    await new Promise((r) => setTimeout(r, 250)); // sampling resumes after the scrape's reset
    const until = Date.now() + 400;
    while (Date.now() < until); // a 400 ms stall
    await new Promise((r) => setTimeout(r, 300));
    expect(await value('max')).toBeGreaterThan(0.25);
  });
});

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

  it('serves only the metrics ?name= asks for, and leaves the lag window to the full scrape', async () => {
    const registry = createRegistry('test', 'node-a');
    new Counter({ name: 'ktrail_a_total', help: 'a', registers: [registry] }).inc(1);
    new Counter({ name: 'ktrail_b_total', help: 'b', registers: [registry] }).inc(2);
    const http = await startHttpServer({ port: 0, registry, ready: () => true });
    try {
      const base = `http://127.0.0.1:${http.port}/metrics`;
      const some = await (await fetch(`${base}?name=ktrail_b_total&name=ktrail_nope`)).text();
      expect(some).toMatch(/^ktrail_b_total\{component="test",node="node-a"\} 2$/m);
      expect(some).not.toMatch(/ktrail_a_total|eventloop/);
      // A 300 ms stall, then a filtered read: the next full scrape still sees it.
      await new Promise((r) => setTimeout(r, 250));
      const until = Date.now() + 300;
      while (Date.now() < until);
      await new Promise((r) => setTimeout(r, 250));
      await fetch(`${base}?name=ktrail_a_total`);
      const all = await (await fetch(base)).text();
      const max = /ktrail_nodejs_eventloop_lag_max_seconds\{[^}]*\} ([0-9.e-]+)/.exec(all);
      expect(Number(max?.[1])).toBeGreaterThan(0.15);
    } finally {
      await http.close();
    }
  });
});
