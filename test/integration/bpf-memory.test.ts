// A memory cgroup's last reading, from the kernel at its removal (bpf/memory.bpf.c,
// kt_memory_release): the peak, what is still charged, the limit and the OOM kills, equal
// to what cgroupfs said just before the rmdir. The cgroup is a real memory cgroup with a
// process that touched a known amount (v2 where it has the memory controller, the v1
// memory hierarchy on these hybrid machines: test/support/memory-cgroup.ts).
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { MemoryRelease } from '../../collector/src/kernel/decode.js';
import { FLAG } from '../../collector/src/kernel/layout.js';
import {
  buildBpf,
  cgroupId,
  cgroupV2Root,
  missingKernel,
  openRecorder,
  type Recorder,
} from '../support/bpf.js';
import { createMemoryCgroup, type MemoryCgroup, missingMemoryCgroup } from '../support/memory-cgroup.js';
import { itReal } from '../support/real.js';

const missing = missingKernel() ?? missingMemoryCgroup();
const MiB = 1 << 20;

/** Runs busybox dd with one `mib` MiB buffer filled from /dev/zero (every page written) in the cgroup. */
function touch(cg: MemoryCgroup, mib: number): Promise<number | null> {
  const child = cg.spawn('/bin/busybox', ['dd', 'if=/dev/zero', 'of=/dev/null', `bs=${mib}M`, 'count=1'], {
    stdio: 'ignore',
  });
  return new Promise((resolve) => child.on('close', (code) => resolve(code)));
}

describe('memory cgroup release, from the kernel', () => {
  let rec: Recorder;
  beforeAll(() => {
    if (missing) return;
    buildBpf();
    rec = openRecorder(['memory']);
  });
  afterAll(() => rec?.close());

  const released = (id: bigint) =>
    rec.waitFor((e) => e.kind === 'memory_release' && e.cgroupId === id, 10_000) as Promise<MemoryRelease>;

  itReal(missing)('peak, current, limit and OOM kills equal cgroupfs just before the rmdir', async () => {
    const bornMs = performance.now();
    const cg = createMemoryCgroup('release', 256 * MiB);
    const id = cgroupId(cg.dir);
    expect(await touch(cg, 48)).toBe(0);
    const peak = cg.peakBytes();
    const usage = cg.usageBytes();
    await cg.remove();
    const livedMs = performance.now() - bornMs;
    const e = await released(id);
    expect(e).toMatchObject({
      flags: FLAG.memoryRelease,
      path: `/${cg.dir.split('/').at(-1)}`,
      level: 1,
      peakBytes: BigInt(peak),
      limitBytes: BigInt(256 * MiB),
      oomKills: 0n,
    });
    expect(e.hierarchyId === 0).toBe(cg.version === 2);
    // What stays charged can only shrink after the read (deferred frees), never grow.
    expect(e.currentBytes).toBeLessThanOrEqual(BigInt(usage));
    expect(e.peakBytes).toBeGreaterThanOrEqual(BigInt(48 * MiB));
    expect(e.peakBytes).toBeLessThan(BigInt(52 * MiB));
    console.log(
      `[bpf-memory] cgroup lived ${livedMs.toFixed(1)} ms; 48 MiB touched: peak ${peak} B (+${peak - 48 * MiB}), current at rmdir ${e.currentBytes} B`,
    );
  });

  itReal(missing)('an OOM-killed cgroup: its kill, its limit, a peak at the limit', async () => {
    const cg = createMemoryCgroup('release-oom', 16 * MiB);
    const id = cgroupId(cg.dir);
    expect(await touch(cg, 64)).not.toBe(0); // SIGKILL
    expect(cg.oomKills()).toBe(1);
    const peak = cg.peakBytes();
    await cg.remove();
    const e = await released(id);
    expect(e).toMatchObject({ oomKills: 1n, limitBytes: BigInt(16 * MiB), peakBytes: BigInt(peak) });
    expect(peak).toBeGreaterThan(15 * MiB);
  });

  itReal(missing)('no record for a cgroup without memory state of its own', async () => {
    // A child of a v2 cgroup that does not enable memory for its children has no memcg (on a
    // hybrid host no v2 cgroup has one); the parent's record, if any, names the parent.
    const parent = join(cgroupV2Root, `ktrail-nomem-${process.pid}`);
    const child = join(parent, 'child');
    mkdirSync(child, { recursive: true });
    const parentHasMemory = subtreeControl(cgroupV2Root).includes('memory');
    const childId = cgroupId(child);
    const parentId = cgroupId(parent);
    rmdirSync(child);
    rmdirSync(parent);
    // Something that surely has a record comes after: once it is in, the child's would be.
    const marker = createMemoryCgroup('release-marker', 64 * MiB);
    const markerId = cgroupId(marker.dir);
    await marker.remove();
    await released(markerId);
    const ids = rec.events.filter((e) => e.kind === 'memory_release').map((e) => e.cgroupId);
    expect(ids).not.toContain(childId);
    expect(ids.includes(parentId)).toBe(parentHasMemory);
  });
});

function subtreeControl(dir: string): string {
  try {
    return readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8');
  } catch {
    return '';
  }
}
