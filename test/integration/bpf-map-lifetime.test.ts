// Map lifetime on the real kernel (issue #13 item 5, DESIGN.md pitfall 13): the per-cgroup maps
// kt_cpu, kt_net and kt_block hold 16,384 entries; a removed cgroup's entries are read one
// last time and deleted, so churn never fills them. Network bytes are exact: UDP datagrams on
// IPv4 loopback are seen by cgroup_skb as one IP packet each, payload + 28 header bytes, once
// leaving (egress) and once arriving (ingress) in the same cgroup.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, onTestFinished } from 'vitest';
import { buildCollector } from '../../collector/src/build.js';
import { createBootClock } from '../../collector/src/clock.js';
import type { MessageSink } from '../../collector/src/kafka-sink.js';
import { fixtureDir } from '../../collector/src/kernel/addon.js';
import { KT_CPU_VALUE } from '../../collector/src/kernel/layout.js';
import { createSampler, type SampleEvent } from '../../collector/src/sampler.js';
import { validateConfig } from '../../common/config.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { CgroupRmdir } from '../../schemas/types.js';
import {
  buildBpf,
  cgroupV2Root,
  freshCgroup,
  inCgroups,
  missingKernel,
  openRecorder,
  run,
} from '../support/bpf.js';
import { itReal } from '../support/real.js';

const churnBin = join(fixtureDir, 'cgroup_churn');
const missing =
  missingKernel() ?? (existsSync(churnBin) ? undefined : `${churnBin} not built (npm run build:native)`);

const UDP_IPV4_OVERHEAD = 28n; // IPv4 header 20 + UDP header 8
const MAX_ENTRIES = 16_384; // KT_MAX_CGROUPS (bpf/include/common.bpf.h)
const node = process.execPath;

/** usage_usec of a v2 cgroup's cpu.stat (kept even without the cpu controller), in ns. */
function cgroupUsageNs(dir: string): bigint {
  const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'));
  return BigInt(m?.[1] ?? '0') * 1000n;
}

/**
 * A node script that burns `burnUs` of CPU, then sends `count` datagrams of `size` bytes to
 * its own UDP socket on 127.0.0.1, one in flight at a time (none can be dropped).
 */
function udpScript(dir: string, count: number, size: number, burnUs: number): string {
  const file = join(dir, `udp-${count}-${size}-${burnUs}.cjs`);
  writeFileSync(
    file,
    `const x = { n: 0 };
for (;;) { for (let i = 0; i < 1e6; i++) x.n += i; const u = process.cpuUsage(); if (u.user + u.system >= ${burnUs}) break; }
const s = require('node:dgram').createSocket('udp4');
let got = 0;
const send = () => s.send(Buffer.alloc(${size}, 7), s.address().port, '127.0.0.1');
s.on('message', (m) => { if (m.length !== ${size}) process.exit(3); if (++got === ${count}) s.close(); else send(); });
s.bind(0, '127.0.0.1', send);
`,
  );
  return file;
}

/** Sums of the samples of one cgroup, by field. */
function totals(samples: SampleEvent[], cgroupId: bigint) {
  const t = {
    cpuNs: 0n,
    cpuSamples: 0,
    txBytes: 0n,
    rxBytes: 0n,
    txPackets: 0n,
    rxPackets: 0n,
    netSamples: 0,
  };
  for (const s of samples) {
    if (s.cgroupId !== cgroupId) continue;
    if (s.kind === 'cpu_sample') {
      t.cpuNs += s.cpuNs;
      t.cpuSamples++;
    } else if (s.kind === 'net_sample') {
      t.txBytes += s.txBytes;
      t.rxBytes += s.rxBytes;
      t.txPackets += s.txPackets;
      t.rxPackets += s.rxPackets;
      t.netSamples++;
    }
  }
  return t;
}

function mapKeys(entries: Array<[Buffer, Buffer]>): Set<bigint> {
  return new Set(entries.map(([k]) => k.readBigUInt64LE(0)));
}

/** bpf CPU time vs the kernel's own accounting of the cgroup: 5% + 20 ms (bpf-aggregates.test.ts). */
function expectCpuClose(cpuNs: bigint, reference: bigint): void {
  const diff = cpuNs > reference ? cpuNs - reference : reference - cpuNs;
  expect(diff, `bpf ${cpuNs} ns vs cpu.stat ${reference} ns`).toBeLessThan(reference / 20n + 20_000_000n);
}

describe('per-cgroup map lifetime on the real kernel', () => {
  itReal(missing)("a removed cgroup's last counts are emitted once and its entries are deleted", async () => {
    buildBpf();
    const rec = openRecorder(['cpu', 'net', 'cgroup']);
    onTestFinished(() => rec.close());
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-lifetime-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const sampler = createSampler({
      intervalMs: 60_000, // read by hand below
      clock: createBootClock(),
      readMap: (name) => rec.capture.readMap(name, 'sum'),
      takeMapEntries: (name, ids) => rec.capture.takeMapEntries(name, ids, 'sum'),
      mapCapacity: (name) => rec.capture.mapInfo(name).maxEntries,
    });
    const samples: SampleEvent[] = [];
    samples.push(...sampler.sampleNow()); // baseline
    const size = 1000;
    const cg = freshCgroup('lifetime');
    try {
      const procs = join(cg.dir, 'cgroup.procs');
      const first = await run('/bin/sh', inCgroups([procs], `${node} ${udpScript(dir, 100, size, 0)}`));
      expect(first.status, first.stderr).toBe(0);
      const live = sampler.sampleNow();
      samples.push(...live);
      expect(totals(live, cg.id).txBytes).toBe(100n * (BigInt(size) + UDP_IPV4_OVERHEAD));

      // Counts made after the last reading, then the cgroup goes before any other reading.
      const second = await run(
        '/bin/sh',
        inCgroups([procs], `${node} ${udpScript(dir, 300, size, 200_000)}`),
      );
      expect(second.status, second.stderr).toBe(0);
      const usage = cgroupUsageNs(cg.dir);
      cg.remove();
      await rec.waitFor((e): e is CgroupRmdir => e.kind === 'cgroup_rmdir' && e.cgroupId === cg.id);
      sampler.cgroupRemoved(cg.id);
      const last = sampler.sampleNow();
      samples.push(...last);
      const lastNet = totals(last, cg.id);
      expect(lastNet).toMatchObject({
        txBytes: 300n * (BigInt(size) + UDP_IPV4_OVERHEAD),
        rxBytes: 300n * (BigInt(size) + UDP_IPV4_OVERHEAD),
        txPackets: 300n,
        rxPackets: 300n,
        netSamples: 1,
        cpuSamples: 1,
      });
      expect(lastNet.cpuNs).toBeGreaterThanOrEqual(200_000_000n); // the second process burnt 200 ms
      for (const map of ['kt_cpu', 'kt_net'])
        expect(mapKeys(rec.capture.readMap(map)).has(cg.id), `${map} still holds the cgroup`).toBe(false);

      // Never again, and the totals are the whole truth, once.
      const after = sampler.sampleNow();
      samples.push(...after);
      expect(after.filter((s) => s.cgroupId === cg.id)).toEqual([]);
      const all = totals(samples, cg.id);
      expect(all.txBytes).toBe(400n * (BigInt(size) + UDP_IPV4_OVERHEAD));
      expect(all.rxBytes).toBe(all.txBytes);
      expect(all.rxPackets).toBe(400n);
      expectCpuClose(all.cpuNs, usage);
      const byMap = Object.fromEntries(sampler.mapStats().map((s) => [s.map, s]));
      expect(byMap.kt_cpu).toMatchObject({ maxEntries: MAX_ENTRIES, evicted: 0 });
      expect(byMap.kt_net?.deleted).toBeGreaterThanOrEqual(1);
      expect(byMap.kt_cpu?.deleted).toBeGreaterThanOrEqual(1);
      expect(rec.capture.mapInfo('kt_net').typeName).toBe('lru_percpu_hash');
    } finally {
      if (existsSync(cg.dir)) cg.remove();
    }
  });

  itReal(missing)(
    'takeMapEntries reads and deletes the keys that exist; a bad key deletes nothing',
    async () => {
      buildBpf();
      const rec = openRecorder(['cpu']);
      onTestFinished(() => rec.close());
      const cg = freshCgroup('take');
      try {
        const child = await run('/bin/sh', inCgroups([join(cg.dir, 'cgroup.procs')], '/bin/true'));
        expect(child.status).toBe(0);
        expect(mapKeys(rec.capture.readMap('kt_cpu')).has(cg.id)).toBe(true);
        expect(() => rec.capture.takeMapEntries('kt_cpu', [cg.id, Buffer.alloc(3)])).toThrow(/3 bytes/);
        expect(mapKeys(rec.capture.readMap('kt_cpu')).has(cg.id)).toBe(true);
        const before = rec.mapValue('kt_cpu', KT_CPU_VALUE, cg.id);
        const taken = rec.capture.takeMapEntries('kt_cpu', [cg.id, 0xffff_ffff_ffffn], 'raw');
        expect(taken.map(([k]) => k.readBigUInt64LE(0))).toEqual([cg.id]);
        // raw: every CPU's value; their sum is what the map held.
        const raw = taken[0]?.[1] ?? Buffer.alloc(0);
        expect(raw.length % KT_CPU_VALUE.size).toBe(0);
        let cpuNs = 0n;
        for (let off = 0; off < raw.length; off += KT_CPU_VALUE.size) cpuNs += raw.readBigUInt64LE(off);
        expect(cpuNs).toBe(before?.cpu_ns);
        expect(mapKeys(rec.capture.readMap('kt_cpu')).has(cg.id)).toBe(false);
        expect(rec.capture.takeMapEntries('kt_cpu', [cg.id])).toEqual([]);
      } finally {
        cg.remove();
      }
    },
  );

  // 50,000 cgroups created and removed one after the other; in every 2nd a child process runs
  // (25,000: more than the maps hold, so without deletes they would fill). The collector runs
  // as shipped (every object, sampler and its 10 s interval, observer) with an in-memory sink
  // instead of Kafka. ~2,000 cgroups with entries a second: 20,000 per interval, so only the
  // early take of removed cgroups keeps the maps below their 16,384 entries.
  itReal(missing)(
    '50,000 cgroups come and go; a new cgroup is still counted exactly and the maps never fill',
    async () => {
      buildBpf();
      const dir = mkdtempSync(join(tmpdir(), 'ktrail-churn-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      const resolver = createSchemaResolver();
      const samples: SampleEvent[] = [];
      const sink: MessageSink = {
        async send(messages) {
          for (const m of messages) {
            if (m.sequence < 0n) continue; // container and stats messages
            for (const e of resolver.decodeAs('EventBatch', m.value).events)
              if (e.kind === 'cpu_sample' || e.kind === 'net_sample') samples.push(e);
          }
          return { status: 'success' };
        },
        async close() {},
      };
      const config = validateConfig({
        node: 'node-map-lifetime-it',
        http: { port: 0 },
        kafka: { brokers: ['127.0.0.1:1'], topicPrefix: 'unused.', partitions: 1 },
        collector: {
          source: 'ebpf',
          bpfObjectDir: 'bpf/.output',
          statsIntervalMs: 60_000,
          batchMaxMs: 100,
        },
      });
      const stateDir = mkdtempSync(join(tmpdir(), 'ktrail-churn-state-'));
      process.env.KTRAIL_STATE_DIR = stateDir;
      onTestFinished(() => {
        delete process.env.KTRAIL_STATE_DIR;
        rmSync(stateDir, { recursive: true, force: true });
      });
      const intervalMs = config.collector.sampleIntervalMs; // the shipped default, 10 s
      const registry = new Registry();
      const built = await buildCollector({ config, sink, registry, containers: false, ensureTopics: false });
      await built.start();
      let stopped = false;
      onTestFinished(async () => {
        if (!stopped) await built.stop();
      });
      const capture = built.capture;
      if (!capture) throw new Error('the eBPF source has no capture after start');

      const parent = join(cgroupV2Root, `ktrail-test-churn-${process.pid}-${Date.now().toString(36)}`);
      mkdirSync(parent);
      onTestFinished(() => {
        for (const name of readdirSync(parent)) if (/^c\d+$/.test(name)) rmdirSync(join(parent, name));
        rmdirSync(parent);
      });
      const idsFile = join(dir, 'ids');
      // Occupancy between the sampler's readings too: every 100 ms while the churn runs.
      const observed = { kt_cpu: 0, kt_net: 0, kt_block: 0 };
      const poll = setInterval(() => {
        for (const map of ['kt_cpu', 'kt_net', 'kt_block'] as const)
          observed[map] = Math.max(observed[map], capture.readMap(map).length);
      }, 100);
      const started = Date.now();
      const churn = await run(churnBin, [parent, '50000', '2', '50', idsFile]);
      const churnMs = Date.now() - started;
      clearInterval(poll);
      expect(churn.status, churn.stderr).toBe(0);
      const report = JSON.parse(churn.stdout) as { cgroups: number; children: number; fsyncs: number };
      expect(report).toMatchObject({ cgroups: 50_000, children: 25_000 });
      const churnIds = new Set(
        readFileSync(idsFile, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => BigInt(l)),
      );
      expect(churnIds.size).toBe(25_000);

      // A new cgroup after the churn: 400 ms of CPU and 2,000 datagrams of 1,400 bytes.
      const probe = freshCgroup('probe');
      const size = 1400;
      const count = 2000;
      const child = await run(
        '/bin/sh',
        inCgroups([join(probe.dir, 'cgroup.procs')], `${node} ${udpScript(dir, count, size, 400_000)}`),
      );
      expect(child.status, child.stderr).toBe(0);
      const usage = cgroupUsageNs(probe.dir);
      probe.remove();
      // The reading after the rmdir takes the probe's entries; the one after must add nothing.
      await new Promise((r) => setTimeout(r, 2 * intervalMs + 1_000));
      const leftover = { kt_cpu: 0, kt_net: 0, kt_block: 0 };
      const probeLeft: string[] = [];
      for (const map of ['kt_cpu', 'kt_net', 'kt_block'] as const) {
        const keys = mapKeys(capture.readMap(map));
        for (const id of keys) if (churnIds.has(id)) leftover[map]++;
        if (keys.has(probe.id)) probeLeft.push(map);
      }
      const counters = capture.counters();
      const metrics = await registry.getMetricsAsJSON();
      stopped = true;
      const final = await built.stop();

      const byMap = (name: string) =>
        Object.fromEntries(
          (metrics.find((m) => m.name === name)?.values ?? []).map((v) => [String(v.labels.map), v.value]),
        );
      const peak = byMap('ktrail_collector_kernel_map_peak_entries');
      const deleted = byMap('ktrail_collector_kernel_map_deleted_total');
      const evicted = byMap('ktrail_collector_kernel_map_evicted_total');
      const max = byMap('ktrail_collector_kernel_map_max_entries');
      console.log(
        JSON.stringify({
          churn: report,
          churnMs,
          observed,
          peak,
          deleted,
          evicted,
          max,
          leftover,
          drops: counters.kernelDrops,
        }),
      );

      // Every churn cgroup's entries are gone; nothing was evicted or failed to insert.
      expect(leftover).toEqual({ kt_cpu: 0, kt_net: 0, kt_block: 0 });
      expect(probeLeft).toEqual([]);
      expect(counters.kernelDrops.slice(3, 5), 'cgroup mkdir/rmdir events lost').toEqual([0, 0]);
      expect(counters.kernelDrops.slice(10, 15), 'aggregate inserts failed').toEqual([0, 0, 0, 0, 0]);
      for (const map of ['kt_cpu', 'kt_net', 'kt_block'] as const) {
        expect(max[map]).toBe(MAX_ENTRIES);
        expect(peak[map], `${map} peak occupancy at readings`).toBeLessThan(MAX_ENTRIES);
        expect(observed[map], `${map} occupancy polled during the churn`).toBeLessThan(MAX_ENTRIES);
        expect(evicted[map], `${map} evictions`).toBe(0);
      }
      expect(deleted.kt_cpu).toBeGreaterThanOrEqual(25_000);
      expect(deleted.kt_net).toBeGreaterThanOrEqual(25_000);

      // The probe: exact network bytes and packets, CPU as the kernel accounts it, once.
      const t = totals(samples, probe.id);
      const bytes = BigInt(count) * (BigInt(size) + UDP_IPV4_OVERHEAD);
      expect(t).toMatchObject({
        txBytes: bytes,
        rxBytes: bytes,
        txPackets: BigInt(count),
        rxPackets: BigInt(count),
      });
      expect(t.cpuNs).toBeGreaterThanOrEqual(400_000_000n);
      expectCpuClose(t.cpuNs, usage);
      expect(final.unaccounted).toBe(0);
    },
    300_000,
  );
});
