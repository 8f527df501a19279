// The native addon against the real kernel, with the fixture objects of native/test/:
// lifecycle without leaks, records for known activity, exact loss accounting, verifier
// reasons for a broken program, load-time settings and the cgroup allowlist.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect } from 'vitest';
import {
  addonPath,
  type CaptureSettings,
  cgroupV2Root,
  fixtureDir,
  missingKernelCapture,
  openCapture,
  recordOffsets,
} from '../../collector/src/kernel/addon.js';
import { createCaptureWriter } from '../../collector/src/kernel/capture.js';
import { createReplaySource } from '../../collector/src/kernel/replay-source.js';
import { itReal } from '../support/real.js';

const FIXTURE = join(fixtureDir, 'fixture.bpf.o');
const BROKEN = join(fixtureDir, 'broken.bpf.o');
const STORM = join(fixtureDir, 'getpid_storm');
const TYPE_GETPID = 1000;
const TYPE_EXEC = 1001;
const CGROUP_V2 = cgroupV2Root() ?? '/sys/fs/cgroup/unified';

const missing = missingKernelCapture();
const real = itReal(missing);

interface FixtureRecord {
  type: number;
  size: number;
  cgroupId: bigint;
  pid: number;
  tgid: number;
  tag: bigint;
}

/** Collects every fixture record delivered to JS. */
function collector() {
  const records: FixtureRecord[] = [];
  let delivered = 0;
  const onBatch = (buf: Buffer, n: number) => {
    delivered += n;
    for (const off of recordOffsets(buf)) {
      records.push({
        type: buf.readUInt16LE(off),
        size: buf.readUInt32LE(off + 4),
        cgroupId: buf.readBigUInt64LE(off + 16),
        pid: buf.readUInt32LE(off + 24),
        tgid: buf.readUInt32LE(off + 28),
        tag: buf.readBigUInt64LE(off + 32),
      });
    }
  };
  return { records, onBatch, delivered: () => delivered };
}

function settings(extra: Partial<CaptureSettings> = {}): CaptureSettings {
  return { objects: [FIXTURE], ringBufferBytes: 4 << 20, batchMaxBytes: 64 << 10, batchMaxMs: 10, ...extra };
}

/** A storm process that has printed its pid and waits for "go". */
async function stormWaiting(count: number): Promise<{ child: ChildProcessWithoutNullStreams; pid: number }> {
  const child = spawn(STORM, [String(count), '--wait']);
  const pid = await new Promise<number>((resolvePid, reject) => {
    child.stdout.once('data', (d: Buffer) => resolvePid(Number.parseInt(d.toString(), 10)));
    child.once('error', reject);
  });
  return { child, pid };
}

async function go(child: ChildProcessWithoutNullStreams): Promise<void> {
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.stdin.write('go\n');
  await exited;
}

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

/** Fixture programs in the kernel, or links to them. */
function fixtureProgramCount(kind: 'prog' | 'link'): number {
  const show = (what: string) =>
    JSON.parse(execFileSync('bpftool', ['-j', what, 'show'], { encoding: 'utf8' }));
  const progs = (show('prog') as Array<{ id: number; name?: string }>).filter((p) =>
    p.name?.startsWith('fixture_'),
  );
  if (kind === 'prog') return progs.length;
  const ids = new Set(progs.map((p) => p.id));
  return (show('link') as Array<{ prog_id?: number }>).filter(
    (l) => l.prog_id !== undefined && ids.has(l.prog_id),
  ).length;
}

describe('native addon (real kernel)', () => {
  real(
    'opens and closes 100 times without leaking fds, threads, programs or links',
    async () => {
      const cycle = () => {
        const c = openCapture(settings({ objects: [FIXTURE, BROKEN] }), () => {});
        expect(c.counters().programs.filter((p) => p.attached).length).toBe(3);
        c.close();
        c.close(); // idempotent
      };
      cycle(); // warm up: lazily created libuv/V8 threads and the addon itself
      await new Promise((r) => setTimeout(r, 50));
      const fds = readdirSync('/proc/self/fd').length;
      const tasks = readdirSync('/proc/self/task').length;
      const progs = fixtureProgramCount('prog');
      const links = fixtureProgramCount('link');
      for (let i = 0; i < 100; i++) cycle();
      await new Promise((r) => setTimeout(r, 50));
      expect(readdirSync('/proc/self/fd').length).toBe(fds);
      expect(readdirSync('/proc/self/task').length).toBe(tasks);
      expect(fixtureProgramCount('prog')).toBe(progs);
      expect(fixtureProgramCount('link')).toBe(links);
    },
    120_000,
  );

  // The same check on every real object (tracepoints, tp_btf and cgroup_skb links on the v2 root):
  // after close, none of the kernel program ids it had may remain in any program, link or
  // cgroup attachment list.
  const bpfOutput = join(fixtureDir, '../../../../bpf/.output');
  const realObjects = existsSync(bpfOutput)
    ? readdirSync(bpfOutput)
        .filter((f) => f.endsWith('.bpf.o'))
        .map((f) => join(bpfOutput, f))
    : [];
  itReal(missing ?? (realObjects.length === 0 ? 'bpf/.output not built (npm run build:bpf)' : undefined))(
    'opens and closes every bpf/ object 10 times without leaking programs, links or cgroup attachments',
    async () => {
      const bpftool = (...args: string[]) =>
        JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }).trim() || '[]') as Array<
          Record<string, unknown>
        >;
      const ours = new Set<number>();
      let cgroupAttached = 0;
      const cycle = () => {
        const c = openCapture(settings({ objects: realObjects }), () => {});
        const programs = c.counters().programs;
        expect(programs.filter((p) => p.attached).length).toBeGreaterThan(0);
        for (const p of programs) if (p.id !== undefined) ours.add(p.id);
        cgroupAttached = bpftool('cgroup', 'show', CGROUP_V2).filter((e) => ours.has(Number(e.id))).length;
        c.close();
      };
      cycle();
      await new Promise((r) => setTimeout(r, 50));
      const fds = readdirSync('/proc/self/fd').length;
      const tasks = readdirSync('/proc/self/task').length;
      for (let i = 0; i < 10; i++) cycle();
      await new Promise((r) => setTimeout(r, 50));
      expect(readdirSync('/proc/self/fd').length).toBe(fds);
      expect(readdirSync('/proc/self/task').length).toBe(tasks);
      expect(ours.size).toBeGreaterThanOrEqual(11);
      expect(bpftool('prog', 'show').filter((p) => ours.has(Number(p.id)))).toEqual([]);
      expect(bpftool('link', 'show').filter((l) => ours.has(Number(l.prog_id)))).toEqual([]);
      expect(bpftool('cgroup', 'show', CGROUP_V2).filter((e) => ours.has(Number(e.id)))).toEqual([]);
      // While open, the cgroup_skb programs (if any object has them) were on the v2 root.
      const skb = realObjects.some((o) => o.endsWith('/net.bpf.o'));
      if (skb) expect(cgroupAttached).toBeGreaterThan(0);
    },
    120_000,
  );

  real('releases a capture left open in a worker that is terminated (env cleanup hook)', async () => {
    const script = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.addonPath);
      new addon.Capture(workerData.settings, () => {}); // never closed
      parentPort.postMessage('open');
      setInterval(() => {}, 1000);
    `;
    const run = async () => {
      const w = new Worker(script, { eval: true, workerData: { addonPath, settings: settings() } });
      await new Promise((r) => w.once('message', r));
      await w.terminate();
    };
    await run(); // warm up
    await new Promise((r) => setTimeout(r, 100));
    const fds = readdirSync('/proc/self/fd').length;
    const tasks = readdirSync('/proc/self/task').length;
    const progs = fixtureProgramCount('prog');
    for (let i = 0; i < 5; i++) await run();
    await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync('/proc/self/fd').length).toBe(fds);
    expect(readdirSync('/proc/self/task').length).toBe(tasks);
    expect(fixtureProgramCount('prog')).toBe(progs);
  });

  real('delivers an exec record for every /bin/true it runs, with the right pid', async () => {
    const { records, onBatch } = collector();
    const c = openCapture(settings({ programs: ['fixture_exec'] }), onBatch);
    try {
      const pids: number[] = [];
      for (let i = 0; i < 20; i++) pids.push(spawnSync('/bin/true').pid ?? -1);
      const seen = () => new Set(records.filter((r) => r.type === TYPE_EXEC).map((r) => r.tgid));
      await until(() => pids.every((p) => seen().has(p)));
      const execs = seen();
      for (const pid of pids) expect(execs.has(pid)).toBe(true);
      expect(records.every((r) => r.size === 40)).toBe(true);
      expect(c.counters().programs.map((p) => p.name)).toEqual(['fixture_exec']);
    } finally {
      c.close();
    }
  });

  real('applies kt_cfg_* settings and delivers exactly N records for N calls', async () => {
    const n = 20_000;
    const { child, pid } = await stormWaiting(n);
    const { records, onBatch, delivered } = collector();
    const tag = 0x1234_5678_9abc_def0n;
    const c = openCapture(
      settings({ programs: ['fixture_getpid'], cfg: { target_tgid: pid, kt_cfg_tag: tag } }),
      onBatch,
    );
    try {
      await go(child);
      await until(() => delivered() >= n);
      await new Promise((r) => setTimeout(r, 50)); // anything extra would show up here
      const counters = c.counters();
      expect(records.length).toBe(n);
      expect(counters.records).toBe(n);
      expect(counters.lostRecords + (counters.kernelDrops[0] ?? 0)).toBe(0);
      expect(records.every((r) => r.tgid === pid && r.type === TYPE_GETPID && r.tag === tag)).toBe(true);
      // The aggregate map counts the same calls, summed over CPUs.
      const cgroupId = records[0]?.cgroupId ?? 0n;
      const entry = c.readMap('kt_fixture_agg').find(([k]) => k.readBigUInt64LE(0) === cgroupId);
      expect(entry?.[1].readBigUInt64LE(0)).toBe(BigInt(n));
      const raw = c.readMap('kt_fixture_agg', 'raw').find(([k]) => k.readBigUInt64LE(0) === cgroupId);
      expect((raw?.[1].length ?? 0) % 16).toBe(0);
      expect(raw?.[1].length ?? 0).toBeGreaterThanOrEqual(16);
    } finally {
      c.close();
    }
  });

  real('lends each batch for its callback: a kept Buffer reads empty after it, a copy stays', async () => {
    const n = 5_000;
    const { child, pid } = await stormWaiting(n);
    const kept: Buffer[] = [];
    const copies: Buffer[] = [];
    const c = openCapture(
      settings({ programs: ['fixture_getpid'], cfg: { target_tgid: pid }, batchMaxBytes: 8192 }),
      (buf) => {
        kept.push(buf);
        copies.push(Buffer.from(buf));
      },
    );
    try {
      await go(child);
      await until(() => c.counters().records >= n);
      await new Promise((r) => setTimeout(r, 50));
      // Many small batches: their memory went round the pool while later ones were filled.
      expect(kept.length).toBeGreaterThan(5);
      expect(kept.every((b) => b.length === 0)).toBe(true);
      const tgids = copies.flatMap((b) => [...recordOffsets(b)].map((off) => b.readUInt32LE(off + 28)));
      expect(tgids).toEqual(Array(n).fill(pid));
    } finally {
      c.close();
    }
  });

  real('leaves out and counts a record shorter than the common header, keeping the batch', async () => {
    const n = 1_000;
    const { child, pid } = await stormWaiting(n);
    const { records, onBatch } = collector();
    // Every record claims 16 bytes: less than struct kt_header (32), undecodable.
    const c = openCapture(
      settings({ programs: ['fixture_getpid'], cfg: { target_tgid: pid, kt_cfg_claimed_size: 16 } }),
      onBatch,
    );
    try {
      await go(child);
      await until(() => c.counters().malformedRecords >= n);
      await new Promise((r) => setTimeout(r, 50));
      expect(c.counters().malformedRecords).toBe(n);
      expect(records).toHaveLength(0);
    } finally {
      c.close();
    }
  });

  real('counts records it could not hand to a busy JS thread, exactly', async () => {
    const n = 200_000;
    const { child, pid } = await stormWaiting(n);
    const { onBatch, delivered } = collector();
    const c = openCapture(
      settings({
        programs: ['fixture_getpid'],
        cfg: { target_tgid: pid },
        batchMaxBytes: 4096,
        maxQueuedBatches: 2,
      }),
      onBatch,
    );
    try {
      const exited = new Promise<void>((done) => child.once('exit', () => done()));
      child.stdin.write('go\n');
      const busyUntil = Date.now() + 400; // block the JS thread while the storm runs
      while (Date.now() < busyUntil) {}
      await exited;
      await new Promise((r) => setTimeout(r, 200));
      const k = c.counters();
      expect(k.lostRecords).toBeGreaterThan(0);
      expect(k.records).toBe(delivered());
      expect(delivered() + k.lostRecords + (k.kernelDrops[0] ?? 0)).toBe(n);
    } finally {
      c.close();
    }
  });

  real('reports the verifier reason for a rejected program while the others run', async () => {
    const { records, onBatch } = collector();
    const c = openCapture(settings({ objects: [BROKEN, FIXTURE] }), onBatch);
    try {
      const k = c.counters();
      const bad = k.programs.find((p) => p.name === 'fixture_bad_helper');
      expect(bad?.attached).toBe(false);
      expect(bad?.error).toMatch(/cannot use helper bpf_sk_lookup_tcp/);
      const fine = k.programs.find((p) => p.name === 'fixture_still_fine');
      expect(fine?.attached).toBe(true);
      const hooked = k.programs.filter((p) => p.object === FIXTURE && p.section !== 'tc');
      expect(hooked.every((p) => p.loaded && p.attached)).toBe(true);
      // A program whose section names no hook is loaded (usable) but said not to be attached.
      const burst = k.programs.find((p) => p.name === 'fixture_burst');
      expect(burst?.loaded).toBe(true);
      expect(burst?.attached).toBe(false);
      expect(burst?.error).toMatch(/no automatic attach point/);
      // The surviving program of the broken object runs...
      for (let i = 0; i < 100; i++) void process.ppid; // getppid(2) each time
      const calls = c.readMap('kt_fine_calls')[0]?.[1].readBigUInt64LE(0) ?? 0n;
      expect(calls).toBeGreaterThanOrEqual(100n);
      // ...and so does the other object.
      const pid = spawnSync('/bin/true').pid;
      await until(() => records.some((r) => r.type === TYPE_EXEC && r.tgid === pid));
      expect(records.some((r) => r.type === TYPE_EXEC && r.tgid === pid)).toBe(true);
    } finally {
      c.close();
    }
  });

  real('names a missing program and an unknown setting instead of ignoring them', () => {
    const c = openCapture(
      settings({ programs: ['fixture_exec', 'no_such_prog'], cfg: { no_such_setting: 1 } }),
      () => {},
    );
    try {
      const k = c.counters();
      expect(k.programs.find((p) => p.name === 'no_such_prog')?.error).toMatch(/no program/);
      expect(k.unusedCfg).toEqual(['kt_cfg_no_such_setting']);
    } finally {
      c.close();
    }
  });

  real('reports only allowlisted cgroups, and follows allow/disallow at run time', async () => {
    const dir = join(CGROUP_V2, `ktrail-native-test-${process.pid}-${Date.now()}`);
    mkdirSync(dir);
    const cgroupId = BigInt(statSync(dir).ino);
    const { records, onBatch } = collector();
    const c = openCapture(settings({ programs: ['fixture_getpid'], filterCgroups: [cgroupId] }), onBatch);
    const runIn = async (inCgroup: boolean, n: number) => {
      const { child, pid } = await stormWaiting(n);
      if (inCgroup) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      await go(child);
      return pid;
    };
    try {
      const inside = await runIn(true, 500);
      const outside = await runIn(false, 500);
      await until(() => records.filter((r) => r.tgid === inside).length >= 500);
      await new Promise((r) => setTimeout(r, 50));
      expect(records.filter((r) => r.tgid === inside).length).toBe(500);
      expect(records.filter((r) => r.tgid === outside).length).toBe(0);
      expect(records.every((r) => r.cgroupId === cgroupId)).toBe(true);

      c.disallowCgroup(cgroupId);
      const blocked = await runIn(true, 300);
      c.allowCgroup(cgroupId);
      const allowed = await runIn(true, 300);
      await until(() => records.filter((r) => r.tgid === allowed).length >= 300);
      expect(records.filter((r) => r.tgid === blocked).length).toBe(0);
      expect(records.filter((r) => r.tgid === allowed).length).toBe(300);
    } finally {
      c.close();
      rmdirSync(dir);
    }
  });

  real('reads every entry of a map in batches, per-CPU values summed or raw', () => {
    const c = openCapture(settings({ programs: ['fixture_exec'] }), () => {});
    try {
      const ids = Array.from({ length: 1000 }, (_, i) => BigInt(i + 1) * 7n);
      for (const id of ids) c.allowCgroup(id);
      const entries = c.readMap('kt_cgroup_allow');
      expect(entries.length).toBe(ids.length);
      expect(new Set(entries.map(([k]) => k.readBigUInt64LE(0)))).toEqual(new Set(ids));
      expect(entries.every(([, v]) => v.length === 1 && v[0] === 1)).toBe(true);
      // kt_drops: per-CPU array of u64, one entry per slot.
      const slots = c.readMap('kt_drops');
      expect(slots.length).toBe(c.counters().kernelDrops.length);
      expect(slots.every(([, v]) => v.length === 8)).toBe(true);
      const raw = c.readMap('kt_drops', 'raw');
      expect(raw[0]?.[1].length).toBe(
        8 * Number(execFileSync('nproc', ['--all'], { encoding: 'utf8' }).trim()),
      );
    } finally {
      c.close();
    }
  });

  real('records real batches to a capture file that replays byte for byte', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-native-capture-'));
    try {
      const file = join(dir, 'real.ktcap');
      const writer = createCaptureWriter(file);
      const live: Buffer[] = [];
      const n = 5_000;
      const { child, pid } = await stormWaiting(n);
      const c = openCapture(
        settings({ programs: ['fixture_getpid'], cfg: { target_tgid: pid }, batchMaxBytes: 8192 }),
        (buf, records) => {
          live.push(Buffer.from(buf));
          writer.write(buf, records);
        },
      );
      await go(child);
      await until(() => c.counters().records >= n);
      c.close();
      await new Promise((r) => setTimeout(r, 50)); // batches queued before close still arrive
      await writer.close();
      expect(c.counters().kernelDrops.length).toBeGreaterThan(0); // final totals survive close()
      expect(writer.records).toBe(n);
      expect(live.length).toBeGreaterThan(1);

      const replay = createReplaySource(file, { rate: 0, loop: false });
      const replayed: Buffer[] = [];
      let records = 0;
      replay.start((buf, r) => {
        replayed.push(buf);
        records += r;
      });
      await replay.done;
      expect(records).toBe(n);
      expect(Buffer.concat(replayed).equals(Buffer.concat(live))).toBe(true);
      expect(replay.header.bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
