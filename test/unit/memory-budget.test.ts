// The memory budget rule (common/memory-budget.ts) and the cgroup limit it defaults from
// (common/cgroup-memory.ts), on cgroupfs-shaped trees in a temp dir: pure v2, hybrid (v2
// without controllers + v1 memory, this fleet), v1 only, a container that sees its own cgroup
// as the mount root, "max", v1's unlimited sentinel, limits of ancestors; then the derived
// sizes and the errors that name the settings.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CgroupMemoryLimit, parseLimit, readCgroupMemoryLimit } from '../../common/cgroup-memory.js';
import { ConfigError } from '../../common/errors.js';
import {
  COLLECTOR_BASELINE_BYTES,
  KERNEL_MAPS_FIXED_BYTES,
  KERNEL_MAPS_PER_CPU_BYTES,
  type MemoryBudget,
  PENDING_ROW_BYTES,
  planCollectorMemory,
  planProcessorMemory,
  possibleCpus,
  QUEUE_BYTE_COST,
  resolveBudget,
  SHIPPED_LIMIT,
} from '../../common/memory-budget.js';

const MiB = 1024 * 1024;
const V1_UNLIMITED = '9223372036854771712';
const root = mkdtempSync(join(tmpdir(), 'ktrail-memory-budget-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fake host: /proc/self/cgroup, /proc/self/mountinfo and cgroupfs files under a temp dir. */
function host(opts: {
  procCgroup: string;
  mounts: Array<{ root?: string; at: string; type: 'cgroup' | 'cgroup2'; options: string }>;
  files: Record<string, string>;
}): { sources: { procCgroup: string; mountInfo: string }; dir: string } {
  const dir = join(root, `host-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'cgroup'), opts.procCgroup);
  const mountLines = opts.mounts.map(
    (m, i) =>
      `${30 + i} 23 0:${40 + i} ${m.root ?? '/'} ${dir}${m.at} rw,relatime - ${m.type} ${m.type} ${m.options}`,
  );
  writeFileSync(join(dir, 'mountinfo'), `${mountLines.join('\n')}\n`);
  for (const [path, content] of Object.entries(opts.files)) {
    const file = join(dir, path);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, content);
  }
  return { sources: { procCgroup: join(dir, 'cgroup'), mountInfo: join(dir, 'mountinfo') }, dir };
}

describe('the cgroup memory limit', () => {
  it('pure v2: memory.max of the process cgroup', () => {
    const h = host({
      procCgroup: '0::/kubepods.slice/pod1/ctr\n',
      mounts: [{ at: '/sys/fs/cgroup', type: 'cgroup2', options: 'rw,nsdelegate' }],
      files: {
        '/sys/fs/cgroup/cgroup.controllers': 'cpu memory pids\n',
        '/sys/fs/cgroup/kubepods.slice/memory.max': 'max\n',
        '/sys/fs/cgroup/kubepods.slice/pod1/memory.max': 'max\n',
        '/sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.max': '268435456\n',
      },
    });
    expect(readCgroupMemoryLimit(h.sources)).toEqual({
      limitBytes: 256 * MiB,
      file: `${h.dir}/sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.max`,
      version: 2,
    });
  });

  it('v2: an ancestor tighter than the process cgroup binds it', () => {
    const h = host({
      procCgroup: '0::/pod/ctr\n',
      mounts: [{ at: '/sys/fs/cgroup', type: 'cgroup2', options: 'rw' }],
      files: {
        '/sys/fs/cgroup/pod/memory.max': '134217728\n',
        '/sys/fs/cgroup/pod/ctr/memory.max': 'max\n',
      },
    });
    expect(readCgroupMemoryLimit(h.sources)).toMatchObject({
      limitBytes: 128 * MiB,
      file: `${h.dir}/sys/fs/cgroup/pod/memory.max`,
    });
  });

  it('v2 "max" everywhere: no limit', () => {
    const h = host({
      procCgroup: '0::/user.slice\n',
      mounts: [{ at: '/sys/fs/cgroup', type: 'cgroup2', options: 'rw' }],
      files: { '/sys/fs/cgroup/user.slice/memory.max': 'max\n' },
    });
    expect(readCgroupMemoryLimit(h.sources)).toMatchObject({ limitBytes: undefined, version: 2 });
  });

  it('hybrid (this fleet): v2 at /sys/fs/cgroup/unified without memory, the limit in v1', () => {
    const h = host({
      procCgroup: '4:memory:/process_api/abc\n1:cpu:/\n0::/\n',
      mounts: [
        { at: '/sys/fs/cgroup/memory', type: 'cgroup', options: 'rw,memory' },
        { at: '/sys/fs/cgroup/unified', type: 'cgroup2', options: 'rw' },
      ],
      files: {
        '/sys/fs/cgroup/unified/cgroup.controllers': 'hugetlb\n',
        '/sys/fs/cgroup/memory/memory.limit_in_bytes': `${V1_UNLIMITED}\n`,
        '/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes': `${V1_UNLIMITED}\n`,
        '/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes': '1073741824\n',
      },
    });
    expect(readCgroupMemoryLimit(h.sources)).toEqual({
      limitBytes: 1024 * MiB,
      file: `${h.dir}/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes`,
      version: 1,
    });
  });

  it("v1: the unlimited sentinel is no limit, and a parent's limit counts", () => {
    const unlimited = host({
      procCgroup: '4:memory:/a\n',
      mounts: [{ at: '/sys/fs/cgroup/memory', type: 'cgroup', options: 'rw,memory' }],
      files: { '/sys/fs/cgroup/memory/a/memory.limit_in_bytes': `${V1_UNLIMITED}\n` },
    });
    expect(readCgroupMemoryLimit(unlimited.sources)).toMatchObject({ limitBytes: undefined, version: 1 });
    const parent = host({
      procCgroup: '3:cpu,memory:/a/b\n',
      mounts: [{ at: '/sys/fs/cgroup/cpu,memory', type: 'cgroup', options: 'rw,cpu,memory' }],
      files: {
        '/sys/fs/cgroup/cpu,memory/a/memory.limit_in_bytes': '536870912\n',
        '/sys/fs/cgroup/cpu,memory/a/b/memory.limit_in_bytes': `${V1_UNLIMITED}\n`,
      },
    });
    expect(readCgroupMemoryLimit(parent.sources)).toMatchObject({ limitBytes: 512 * MiB, version: 1 });
  });

  it('a container whose mount root is its own cgroup (no cgroup namespace) finds its files', () => {
    const h = host({
      procCgroup: '0::/kubepods/burstable/pod9/ctr\n',
      mounts: [
        { root: '/kubepods/burstable/pod9/ctr', at: '/sys/fs/cgroup', type: 'cgroup2', options: 'rw' },
      ],
      files: { '/sys/fs/cgroup/memory.max': '268435456\n' },
    });
    expect(readCgroupMemoryLimit(h.sources)).toMatchObject({ limitBytes: 256 * MiB, version: 2 });
  });

  it('no cgroup files at all (not Linux, or nothing mounted): no limit', () => {
    const h = host({ procCgroup: '', mounts: [], files: {} });
    expect(readCgroupMemoryLimit(h.sources)).toEqual({
      limitBytes: undefined,
      file: undefined,
      version: undefined,
    });
  });

  it('parses limits', () => {
    expect(parseLimit('max\n')).toBeUndefined();
    expect(parseLimit(`${V1_UNLIMITED}\n`)).toBeUndefined();
    expect(parseLimit('268435456\n')).toBe(268435456);
    expect(parseLimit('garbage')).toBeUndefined();
  });
});

describe('the budget', () => {
  const limited: CgroupMemoryLimit = { limitBytes: 256 * MiB, file: '/x/memory.max', version: 2 };
  const unlimited: CgroupMemoryLimit = { limitBytes: undefined, file: undefined, version: undefined };
  const setting = (value?: number) => ({ name: 'collector.memoryBudgetBytes', value });

  it('is the cgroup limit, else the shipped limit, unless the setting says otherwise', () => {
    expect(resolveBudget(setting(), SHIPPED_LIMIT.collector, limited)).toEqual({
      bytes: 256 * MiB,
      source: 'cgroup',
      from: '/x/memory.max',
    });
    expect(resolveBudget(setting(), SHIPPED_LIMIT.collector, unlimited)).toMatchObject({
      bytes: SHIPPED_LIMIT.collector,
      source: 'default',
    });
    expect(resolveBudget(setting(200 * MiB), SHIPPED_LIMIT.collector, limited)).toMatchObject({
      bytes: 200 * MiB,
      source: 'setting',
    });
    expect(resolveBudget(setting(2048 * MiB), SHIPPED_LIMIT.collector, unlimited).bytes).toBe(2048 * MiB);
  });

  it('refuses a setting above the cgroup limit, naming both', () => {
    expect(() => resolveBudget(setting(300 * MiB), SHIPPED_LIMIT.collector, limited)).toThrow(
      /collector\.memoryBudgetBytes \(300 MiB\) is above this process's memory limit \(256 MiB, \/x\/memory\.max\)/,
    );
  });
});

describe('collector sizes', () => {
  const budget = (mib: number): MemoryBudget => ({ bytes: mib * MiB, source: 'cgroup', from: 'test' });

  it('the shipped limit, replay source: the queues get what baseline and headroom leave', () => {
    const plan = planCollectorMemory({
      budget: budget(256),
      source: 'replay',
      ringBufferBytes: 16 * MiB,
      fixedMmapThreshold: true,
    });
    expect(plan.kernelBytes).toBe(0);
    expect(plan.headroomBytes).toBe(Math.round(25.6 * MiB));
    expect(plan.queuesBytes).toBe(256 * MiB - COLLECTOR_BASELINE_BYTES - plan.headroomBytes);
    // Everything the queues may hold, at its resident cost, fits the queues' share.
    const cost = QUEUE_BYTE_COST.fixedMmapThreshold;
    const resident =
      (plan.bufferMaxBytes + plan.containersQueueBytes + plan.statsQueueBytes) * cost +
      (plan.bufferMaxMessages + plan.containersQueueMessages + plan.statsQueueMessages) * 512;
    expect(resident).toBeLessThanOrEqual(plan.queuesBytes);
    expect(resident).toBeGreaterThan(plan.queuesBytes * 0.99);
    expect(plan.bufferMaxBytes).toBeGreaterThan(60 * MiB);
    expect(plan.bufferMaxMessages).toBe(Math.floor(plan.bufferMaxBytes / 4096));
    expect(plan.containersQueueBytes).toBeLessThan(plan.bufferMaxBytes / 6);
  });

  it('the eBPF source charges the ring buffer and per-CPU maps; glibc defaults cost more per byte', () => {
    const replay = planCollectorMemory({
      budget: budget(512),
      source: 'replay',
      ringBufferBytes: 16 * MiB,
      fixedMmapThreshold: true,
    });
    const ebpf = planCollectorMemory({
      budget: budget(512),
      source: 'ebpf',
      ringBufferBytes: 16 * MiB,
      cpuCount: 8,
      fixedMmapThreshold: true,
    });
    expect(ebpf.kernelBytes).toBe(16 * MiB + KERNEL_MAPS_FIXED_BYTES + 8 * KERNEL_MAPS_PER_CPU_BYTES);
    expect(replay.queuesBytes - ebpf.queuesBytes).toBe(ebpf.kernelBytes);
    const glibc = planCollectorMemory({
      budget: budget(512),
      source: 'replay',
      ringBufferBytes: 0,
      fixedMmapThreshold: false,
    });
    expect(glibc.bufferMaxBytes).toBeLessThan(replay.bufferMaxBytes * (1.1 / 1.3));
  });

  it('an explicit buffer that fits is kept; one that does not is refused, naming both settings', () => {
    const ok = planCollectorMemory({
      budget: budget(256),
      source: 'replay',
      ringBufferBytes: 0,
      bufferMaxBytes: 8 * MiB,
    });
    expect(ok.bufferMaxBytes).toBe(8 * MiB);
    expect(ok.bufferMaxMessages).toBe(2048);
    let err: unknown;
    try {
      planCollectorMemory({
        budget: budget(256),
        source: 'replay',
        ringBufferBytes: 0,
        bufferMaxBytes: 256 * MiB,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(
      /collector\.bufferMaxBytes \(256 MiB\) does not fit collector\.memoryBudgetBytes/,
    );
    expect((err as Error).message).toMatch(
      /budget 256 MiB \(test\) - baseline 144 MiB - headroom 26 MiB leaves room for \d+ MiB/,
    );
  });

  it('an explicit message bound is charged per message', () => {
    const derived = planCollectorMemory({
      budget: budget(256),
      source: 'replay',
      ringBufferBytes: 0,
      fixedMmapThreshold: true,
    });
    const many = planCollectorMemory({
      budget: budget(256),
      source: 'replay',
      ringBufferBytes: 0,
      fixedMmapThreshold: true,
      bufferMaxMessages: 100_000,
    });
    expect(many.bufferMaxMessages).toBe(100_000);
    expect(derived.bufferMaxBytes - many.bufferMaxBytes).toBeGreaterThan(
      (100_000 - derived.bufferMaxMessages) * 400,
    );
  });

  it('a budget that cannot hold the process is refused (a 64-CPU node under the shipped limit)', () => {
    expect(() =>
      planCollectorMemory({ budget: budget(256), source: 'ebpf', ringBufferBytes: 16 * MiB, cpuCount: 64 }),
    ).toThrow(
      /collector memory budget too small: budget 256 MiB \(test\) - baseline 144 MiB - kernel 356 MiB \(ring buffer \+ maps on 64 CPUs\)/,
    );
  });
});

describe('possible CPUs (per-CPU map values are allocated for each)', () => {
  it('counts ranges and lists, and falls back to the online CPUs', () => {
    const file = join(root, 'possible');
    for (const [text, n] of [
      ['0-63\n', 64],
      ['0\n', 1],
      ['0,2-5,8\n', 6],
    ] as const) {
      writeFileSync(file, text);
      expect(possibleCpus(file)).toBe(n);
    }
    writeFileSync(file, 'garbage\n');
    expect(possibleCpus(file)).toBe(cpus().length);
    expect(possibleCpus(join(root, 'absent'))).toBe(cpus().length);
  });
});

describe('processor sizes', () => {
  const budget: MemoryBudget = { bytes: 1024 * MiB, source: 'cgroup', from: 'test' };

  it('the smaller of what the budget and the V8 heap leave, in rows', () => {
    // Node sizes its heap from the cgroup limit: 524 MiB at 1 GiB (measured).
    const server = planProcessorMemory({ budget, embedded: false, heapLimitBytes: 524 * MiB });
    expect(server.pendingBytes).toBeLessThanOrEqual(524 * MiB);
    expect(server.pendingMaxRows).toBe(Math.floor(server.pendingBytes / PENDING_ROW_BYTES));
    const bigHeap = planProcessorMemory({ budget, embedded: false, heapLimitBytes: 4096 * MiB });
    expect(bigHeap.pendingBytes).toBe(1024 * MiB - bigHeap.baselineBytes - bigHeap.headroomBytes);
    expect(server.pendingBytes).toBeLessThan(bigHeap.pendingBytes);
    const embedded = planProcessorMemory({ budget, embedded: true, heapLimitBytes: 4096 * MiB });
    expect(embedded.pendingMaxRows).toBeLessThan(bigHeap.pendingMaxRows);
  });

  it('the embedded engine fits a 500 MiB limit (test/integration/processor-embedded-memory), not much less', () => {
    const plan = (mib: number) =>
      planProcessorMemory({
        budget: { bytes: mib * MiB, source: 'cgroup', from: 'test' },
        embedded: true,
        // Node's heap limit in a cgroup of that size (280 MiB measured in 500 MiB).
        heapLimitBytes: 280 * MiB,
      });
    expect(plan(500).pendingMaxRows).toBe(18_432);
    expect(() => plan(480)).toThrow(/processor memory budget too small: budget 480 MiB .* baseline 400 MiB/);
  });

  it('refuses an explicit bound that does not fit, and a budget too small for any', () => {
    expect(() =>
      planProcessorMemory({ budget, embedded: false, heapLimitBytes: 524 * MiB, pendingMaxRows: 2_000_000 }),
    ).toThrow(/processor\.pendingMaxRows \(2000000\) does not fit processor\.memoryBudgetBytes/);
    expect(
      planProcessorMemory({ budget, embedded: false, heapLimitBytes: 524 * MiB, pendingMaxRows: 50_000 })
        .pendingMaxRows,
    ).toBe(50_000);
    expect(() =>
      planProcessorMemory({
        budget: { bytes: 256 * MiB, source: 'setting', from: 'processor.memoryBudgetBytes' },
        embedded: false,
        heapLimitBytes: 4096 * MiB,
      }),
    ).toThrow(/processor memory budget too small/);
  });
});

describe('the collector build', () => {
  it('refuses an explicit buffer its budget cannot hold before it opens anything', async () => {
    const { buildCollector } = await import('../../collector/src/build.js');
    const { validateConfig } = await import('../../common/config.js');
    const config = validateConfig({
      node: 'n',
      kafka: { brokers: ['127.0.0.1:1'] },
      collector: {
        source: 'replay',
        replayFile: '/nonexistent.ktcap',
        memoryBudgetBytes: 256 * MiB,
        bufferMaxBytes: 256 * MiB,
      },
    });
    await expect(buildCollector({ config })).rejects.toThrow(
      /collector\.bufferMaxBytes \(256 MiB\) does not fit collector\.memoryBudgetBytes: budget 256 MiB \(collector\.memoryBudgetBytes\)/,
    );
  });
});
