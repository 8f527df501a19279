// cgroup lifecycle and OOM kills from the real kernel (issue 3 item 7): a cgroup created,
// renamed and removed; a process OOM-killed in a memory-limited cgroup.
// On this fleet cgroups are hybrid: v2 (ids, no controllers) at /sys/fs/cgroup/unified,
// the memory controller only on v1 at /sys/fs/cgroup/memory, so the OOM test puts the
// victim in a fresh v2 cgroup (its identity) AND a fresh v1 memory cgroup (its limit).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { KernelEvent } from '../../collector/src/kernel/decode.js';
import type { CgroupMkdir, CgroupRename, CgroupRmdir, OomKill, ProcExit } from '../../schemas/types.js';
import {
  buildBpf,
  cgroupId,
  cgroupV2Root,
  freshCgroup,
  inCgroups,
  missingKernel,
  openRecorder,
  type Recorder,
  run,
} from '../support/bpf.js';
import { itReal } from '../support/real.js';

const missing = missingKernel();
const memoryV1Root = '/sys/fs/cgroup/memory';

/** Where to create a v1 memory cgroup: its root (our own memcg may belong to whatever runs
 * the tests; the victim is capped by the test's own 64 MiB limit anyway). */
function memoryV1Parent(): string | undefined {
  return existsSync(join(memoryV1Root, 'memory.limit_in_bytes')) ? memoryV1Root : undefined;
}

describe('cgroup.bpf.o and memory.bpf.o on the real kernel', () => {
  let rec: Recorder;
  beforeAll(() => {
    if (missing) return;
    buildBpf();
    rec = openRecorder(['cgroup', 'memory', 'process']);
  });
  afterAll(() => {
    if (!rec) return;
    expect(rec.stats.malformed).toBe(0);
    rec.close();
  });

  itReal(missing)('a v2 cgroup created and removed', async () => {
    const name = `ktrail-test-cg-${process.pid}-${Date.now().toString(36)}`;
    const dir = join(cgroupV2Root, name);
    mkdirSync(dir);
    const id = cgroupId(dir);
    rmdirSync(dir);

    const mk = await rec.waitFor((e): e is CgroupMkdir => e.kind === 'cgroup_mkdir' && e.cgroupId === id);
    expect(mk).toMatchObject({
      path: `/${name}`,
      level: 1,
      hierarchyId: 0,
      pid: process.pid,
      tgid: process.pid,
    });
    const rm = await rec.waitFor((e): e is CgroupRmdir => e.kind === 'cgroup_rmdir' && e.cgroupId === id);
    expect(rm).toMatchObject({ path: `/${name}`, level: 1, hierarchyId: 0 });
    expect(rm.tsNs).toBeGreaterThan(mk.tsNs);
  });

  // cgroup v2 refuses rename (EPERM); only v1 hierarchies can rename, so this needs
  // kt_cfg_cgroup_all_hierarchies (its own capture).
  itReal(missing)('a v1 cgroup renamed, with kt_cfg_cgroup_all_hierarchies', async () => {
    const parent = memoryV1Parent();
    expect(parent, 'a v1 hierarchy to rename in').toBeDefined();
    const all = openRecorder(['cgroup'], { cgroup_all_hierarchies: 1 });
    try {
      const dir = join(parent ?? '', `ktrail-test-mv-${process.pid}-${Date.now().toString(36)}`);
      mkdirSync(dir);
      const id = cgroupId(dir);
      renameSync(dir, `${dir}-renamed`);
      rmdirSync(`${dir}-renamed`);
      const relative = `${dir}-renamed`.slice(memoryV1Root.length);
      const mv = await all.waitFor((e): e is CgroupRename => e.kind === 'cgroup_rename' && e.cgroupId === id);
      expect(mv.path).toBe(relative);
      expect(mv.hierarchyId).toBeGreaterThan(0);
      const mk = await all.waitFor((e): e is CgroupMkdir => e.kind === 'cgroup_mkdir' && e.cgroupId === id);
      expect(mk.hierarchyId).toBe(mv.hierarchyId);
      expect(mk.level).toBe(relative.split('/').length - 1);
    } finally {
      all.close();
    }
  });

  itReal(missing)('v1 hierarchies are not reported by default', async () => {
    const parent = memoryV1Parent();
    if (!parent) return;
    const dir = join(parent, `ktrail-test-v1-${process.pid}-${Date.now().toString(36)}`);
    mkdirSync(dir);
    const id = cgroupId(dir);
    rmdirSync(dir);
    // A v2 mkdir after it acts as a barrier: once it is seen, the v1 one would have been too.
    const barrier = freshCgroup('barrier');
    barrier.remove();
    await rec.waitFor((e) => e.kind === 'cgroup_rmdir' && e.cgroupId === barrier.id);
    expect(rec.events.some((e) => e.kind === 'cgroup_mkdir' && e.cgroupId === id)).toBe(false);
  });

  itReal(missing)('a process OOM-killed in a memory-limited cgroup', async () => {
    const parent = memoryV1Parent();
    expect(parent, 'v1 memory controller (or adapt this test to v2 memory.max)').toBeDefined();
    const memDir = join(parent ?? '', `ktrail-test-oom-${process.pid}-${Date.now().toString(36)}`);
    mkdirSync(memDir);
    const cg = freshCgroup('oom');
    try {
      const limit = 64 << 20;
      writeFileSync(join(memDir, 'memory.limit_in_bytes'), String(limit));
      // Touch 1 MiB buffers until the limit kills us (no swap on this fleet; swappiness 0 anyway).
      try {
        writeFileSync(join(memDir, 'memory.swappiness'), '0');
      } catch {}
      const hog = 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));';
      const child = await run(
        '/bin/sh',
        inCgroups(
          [join(memDir, 'cgroup.procs'), join(cg.dir, 'cgroup.procs')],
          `${process.execPath} -e '${hog}'`,
        ),
      );
      expect(child.signal).toBe('SIGKILL'); // sh exec'd node: the child is the victim

      const oom = await rec.waitFor(
        (e): e is OomKill => e.kind === 'oom_kill' && e.cgroupId === cg.id,
        10_000,
      );
      expect(oom.victimPid).toBe(child.pid);
      expect(oom).toMatchObject({ pid: child.pid, tgid: child.pid, victimUid: process.getuid?.() ?? 0 });
      // The victim's thread name: node's main thread is 'node', or 'MainThread' from Node 24 on.
      expect(oom.comm).toBe(readFileSync(`/proc/${process.pid}/comm`, 'utf8').trim());
      // The victim's anonymous memory is what filled the limit: between half of it and a bit
      // above it. (File RSS, node's own mapped binary, may be charged elsewhere: not bounded.)
      const rssKb = oom.anonRssKb + oom.fileRssKb + oom.shmemRssKb;
      expect(oom.anonRssKb).toBeGreaterThan(BigInt(limit / 2 / 1024));
      expect(oom.anonRssKb).toBeLessThan(BigInt((limit * 1.5) / 1024));
      expect(oom.totalVmKb).toBeGreaterThan(rssKb);
      const exit = await rec.waitFor(
        (e: KernelEvent): e is ProcExit => e.kind === 'proc_exit' && e.tgid === child.pid,
        10_000,
      );
      expect(exit).toMatchObject({ signal: 9, exitCode: 0, cgroupId: cg.id });
    } finally {
      cg.remove();
      for (let i = 0; i < 50 && existsSync(memDir); i++) {
        try {
          rmdirSync(memDir);
        } catch {
          spawnSync('sleep', ['0.1']);
        }
      }
    }
  });
});
