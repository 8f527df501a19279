// The resolver's bookkeeping (startup scan, mkdir/rmdir/rename without rescans, grace period,
// bound, truncated paths) on a plain temp directory tree standing in for the cgroup mount:
// directories there have inodes just like cgroupfs ones. The real cgroup2 hierarchy with a
// real container is exercised in test/integration/docker-smoke.test.ts.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupResolver, detectHierarchy } from '../../collector/src/containers/cgroup-resolver.js';

const dirs: string[] = [];
function tree(paths: string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'ktrail-cgroup-'));
  dirs.push(root);
  for (const p of paths) mkdirSync(join(root, p), { recursive: true });
  return root;
}
const ino = (root: string, p: string) => statSync(join(root, p), { bigint: true }).ino;
const hex = (c: string) => c.repeat(64);

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('CgroupResolver', () => {
  it('scans the hierarchy: inode -> path -> identity', async () => {
    const root = tree([`docker/${hex('a')}`, 'system.slice/ssh.service']);
    const r = await CgroupResolver.create({ mountPoint: root });
    expect(r.resolve(ino(root, '.'))?.path).toBe('/');
    const c = r.resolve(ino(root, `docker/${hex('a')}`));
    expect(c?.path).toBe(`/docker/${hex('a')}`);
    expect(c?.identity).toEqual({ runtime: 'docker', containerId: hex('a'), driver: 'cgroupfs' });
    expect(r.resolve(ino(root, 'system.slice/ssh.service'))?.identity).toBeUndefined();
    expect(r.stats().entries).toBe(5);
  });

  it('learns from mkdir/rename/rmdir events without touching the filesystem', async () => {
    const root = tree([]);
    const r = await CgroupResolver.create({ mountPoint: root, graceMs: 1000, now: () => clock });
    let clock = 0;
    const seen: string[] = [];
    r.onChange((e, kind) => seen.push(`${kind}:${e.id}`));
    r.apply({
      kind: 'cgroup_mkdir',
      cgroupId: 4242n,
      path: `/docker/${hex('b')}`,
      tsNs: 10n,
      hierarchyId: 0,
    });
    expect(r.resolve(4242n)?.identity?.containerId).toBe(hex('b'));
    expect(r.resolve(4242n)?.createdNs).toBe(10n);
    // v1 hierarchies' events are not v2 ids
    expect(
      r.apply({ kind: 'cgroup_mkdir', cgroupId: 7n, path: '/x', tsNs: 1n, hierarchyId: 3 }),
    ).toBeUndefined();
    expect(r.resolve(7n)).toBeUndefined();

    r.apply({
      kind: 'cgroup_rename',
      cgroupId: 4242n,
      path: `/system.slice/docker-${hex('c')}.scope`,
      tsNs: 11n,
    });
    expect(r.resolve(4242n)?.identity).toEqual({
      runtime: 'docker',
      containerId: hex('c'),
      driver: 'systemd',
    });

    r.apply({
      kind: 'cgroup_rmdir',
      cgroupId: 4242n,
      path: `/system.slice/docker-${hex('c')}.scope`,
      tsNs: 12n,
    });
    clock = 999;
    expect(r.resolve(4242n)?.removedNs).toBe(12n); // late events still resolve
    expect(r.stats().removed).toBe(1);
    clock = 1001;
    expect(r.stats().removed).toBe(0); // grace period over
    expect(r.resolve(4242n)).toBeUndefined();
    expect(seen).toEqual(['cgroup_mkdir:4242', 'cgroup_rename:4242', 'cgroup_rmdir:4242']);
  });

  it('knows the id at a path: scanned, created, renamed, removed within the grace period, reused', async () => {
    const root = tree([`docker/${hex('a')}`]);
    let clock = 0;
    const r = await CgroupResolver.create({ mountPoint: root, graceMs: 1000, now: () => clock });
    expect(r.idOfKnownPath(`/docker/${hex('a')}`)).toBe(ino(root, `docker/${hex('a')}`));
    expect(r.idOfKnownPath(`docker/${hex('a')}/`)).toBe(ino(root, `docker/${hex('a')}`)); // normalized
    const path = `/docker/${hex('e')}`;
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 50n, path, tsNs: 1n, hierarchyId: 0 });
    expect(r.idOfKnownPath(path)).toBe(50n);
    r.apply({ kind: 'cgroup_rename', cgroupId: 50n, path: '/moved', tsNs: 2n });
    expect(r.idOfKnownPath(path)).toBeUndefined();
    expect(r.idOfKnownPath('/moved')).toBe(50n);
    r.apply({ kind: 'cgroup_rmdir', cgroupId: 50n, path: '/moved', tsNs: 3n });
    expect(r.idOfKnownPath('/moved')).toBe(50n); // removed, still within the grace period
    // A new cgroup at the same path takes it over; the old one's expiry leaves it alone.
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 51n, path: '/moved', tsNs: 4n, hierarchyId: 0 });
    expect(r.idOfKnownPath('/moved')).toBe(51n);
    clock = 1001;
    r.stats(); // expires 50
    expect(r.resolve(50n)).toBeUndefined();
    expect(r.idOfKnownPath('/moved')).toBe(51n);
    r.apply({ kind: 'cgroup_rmdir', cgroupId: 51n, path: '/moved', tsNs: 5n });
    clock = 3000;
    r.stats();
    expect(r.idOfKnownPath('/moved')).toBeUndefined();
  });

  it('an rmdir for a cgroup it never saw still records it (short-lived, created before start)', async () => {
    const r = await CgroupResolver.create({ mountPoint: tree([]) });
    r.apply({ kind: 'cgroup_rmdir', cgroupId: 99n, path: `/docker/${hex('d')}`, tsNs: 5n });
    expect(r.resolve(99n)?.identity?.containerId).toBe(hex('d'));
    expect(r.resolve(99n)?.removedNs).toBe(5n);
  });

  it('stays within its bound: removed cgroups are evicted first, then the oldest live ones', async () => {
    const r = await CgroupResolver.create({ mountPoint: tree([]), maxEntries: 3 }); // root = 1 entry
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 1n, path: '/a', tsNs: 1n });
    r.apply({ kind: 'cgroup_rmdir', cgroupId: 1n, path: '/a', tsNs: 2n });
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 2n, path: '/b', tsNs: 3n });
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 3n, path: '/c', tsNs: 4n });
    expect(r.resolve(1n)).toBeUndefined();
    expect(r.stats()).toMatchObject({ entries: 3, evictedRemoved: 1, evictedLive: 0 });
    r.apply({ kind: 'cgroup_mkdir', cgroupId: 4n, path: '/d', tsNs: 5n });
    expect(r.stats()).toMatchObject({ entries: 3, evictedLive: 1 });
    expect(r.resolve(4n)?.path).toBe('/d');
  });

  it('repairs a path the kernel truncated, from the live directory', async () => {
    const long = `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0f0e0d0c_0b0a_0908_0706_050403020100.slice/cri-containerd-${hex('e')}.scope`;
    const root = tree([`system.slice/docker-${hex('f')}.scope/${long}`]);
    const r = await CgroupResolver.create({ mountPoint: root, graceMs: 1000 });
    const full = `/system.slice/docker-${hex('f')}.scope/${long}`;
    const id = ino(root, full);
    // the kernel's mkdir event came with a cut path (it replaces what the scan found)
    const cut = full.slice(0, 255);
    expect(full.length).toBeGreaterThan(255);
    // before the repair: charged to the deepest complete ancestor (the kind node container)
    r.apply({ kind: 'cgroup_mkdir', cgroupId: id, path: cut, tsNs: 1n, truncated: true });
    expect(r.resolve(id)?.identity?.containerId).toBe(hex('f'));
    await expect.poll(() => r.resolve(id)?.identity?.containerId, { timeout: 2000 }).toBe(hex('e'));
    expect(r.resolve(id)?.path).toBe(full);
    expect(r.stats().truncatedRepaired).toBe(1);
  });

  it('detects the v2 mount on hybrid and pure v2 hosts, else a v1 hierarchy', async () => {
    const root = tree([]);
    const file = join(root, 'mounts');
    writeFileSync(
      file,
      'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n',
    );
    expect(await detectHierarchy(file)).toEqual({ mountPoint: '/sys/fs/cgroup/unified', version: 2 });
    writeFileSync(file, 'cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n');
    expect(await detectHierarchy(file)).toEqual({ mountPoint: '/sys/fs/cgroup', version: 2 });
    writeFileSync(
      file,
      'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n',
    );
    expect(await detectHierarchy(file)).toEqual({
      mountPoint: '/sys/fs/cgroup/memory',
      version: 1,
      controller: 'memory',
    });
  });
});
