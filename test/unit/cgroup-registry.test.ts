// The container registry's join, driven by kernel-shaped cgroup events (as the BPF source
// decodes them) and provider records: either side may come first, or alone. The real runtimes
// are exercised in test/integration/docker-metadata.test.ts and containerd-metadata.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry, mergeRecords } from '../../collector/src/containers/index.js';
import type { ContainerRecord, MetadataProvider } from '../../collector/src/containers/types.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A provider whose records the test pushes by hand (the interface, not a runtime stand-in). */
function handProvider(): MetadataProvider & { push(r: ContainerRecord): void } {
  let sink: (r: ContainerRecord) => void = () => {};
  return {
    async start(cb) {
      sink = cb;
    },
    async stop() {},
    push: (r) => sink(r),
  };
}

const ID = 'c0ffee'.repeat(10) + 'c0ff';
const dockerRecord = (over: Partial<ContainerRecord> = {}): ContainerRecord => ({
  node: 'n1',
  cgroupId: 0n,
  cgroupPath: `/docker/${ID}`,
  runtime: 'docker',
  containerId: ID,
  name: 'brief',
  image: 'ktrail/busybox:latest',
  labels: { team: 'core' },
  updatedAtNs: 1n,
  state: 'RUNNING',
  ...over,
});

async function setup() {
  const root = mkdtempSync(join(tmpdir(), 'ktrail-registry-'));
  dirs.push(root);
  const resolver = await CgroupResolver.create({ mountPoint: root });
  const provider = handProvider();
  const records: ContainerRecord[] = [];
  const registry = new ContainerRegistry({
    node: 'n1',
    resolver,
    providers: [provider],
    onRecord: (r) => records.push(r),
    bootToWallNs: (ns) => ns + 1_000_000_000_000n, // fixed offset: boot clock -> wall clock
    maxContainers: 3,
  });
  await registry.start();
  return { resolver, provider, records, registry };
}

describe('ContainerRegistry', () => {
  it('a short-lived container seen only by the kernel still gets a record; its name joins later', async () => {
    const { resolver, provider, records, registry } = await setup();
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 501n, path: `/docker/${ID}`, tsNs: 10_000n });
    resolver.apply({ kind: 'cgroup_rmdir', cgroupId: 501n, path: `/docker/${ID}`, tsNs: 110_000n });
    expect(records.map((r) => [r.cgroupId, r.state, r.name])).toEqual([
      [501n, 'RUNNING', ''],
      [501n, 'REMOVED', ''],
    ]);
    expect(records[1]).toMatchObject({ runtime: 'docker', containerId: ID, cgroupPath: `/docker/${ID}` });
    expect(records[1]!.startedAtNs).toBe(1_000_000_010_000n);
    expect(records[1]!.stoppedAtNs).toBe(1_000_000_110_000n);

    // Docker's event stream catches up: the record is re-emitted with the name, for the same cgroup.
    provider.push(dockerRecord({ state: 'STOPPED', startedAtNs: 5n, stoppedAtNs: 6n }));
    const late = records.at(-1)!;
    expect(late).toMatchObject({ cgroupId: 501n, name: 'brief', labels: { team: 'core' }, state: 'REMOVED' });
    expect(late.startedAtNs).toBe(5n); // the runtime's own times win over kernel-derived ones
    expect(registry.lookup(501n)?.name).toBe('brief');
    expect(registry.stats().unjoined).toBe(0);
  });

  it('provider first: emitted at once (cgroup id 0, counted unjoined), joined when the cgroup shows up', async () => {
    const { resolver, provider, records, registry } = await setup();
    provider.push(dockerRecord());
    expect(records).toHaveLength(1);
    expect(records[0]!.cgroupId).toBe(0n);
    expect(registry.stats().unjoined).toBe(1);
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 777n, path: `/docker/${ID}`, tsNs: 1n });
    expect(records.at(-1)).toMatchObject({ cgroupId: 777n, name: 'brief', state: 'RUNNING' });
  });

  it('one record per cgroup: a container with a nested subgroup is announced for each', async () => {
    const { resolver, provider, records } = await setup();
    const scope = `/machine.slice/libpod-${ID}.scope`;
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 10n, path: scope, tsNs: 1n });
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 11n, path: `${scope}/container`, tsNs: 2n });
    records.length = 0;
    provider.push(dockerRecord({ runtime: 'podman', cgroupPath: scope }));
    expect(records.map((r) => [r.cgroupId, r.cgroupPath]).sort()).toEqual([
      [10n, scope],
      [11n, `${scope}/container`],
    ]);
    expect(records.every((r) => r.name === 'brief' && r.runtime === 'podman')).toBe(true);
  });

  it('non-container cgroups produce nothing; memory stays bounded', async () => {
    const { resolver, records, registry } = await setup();
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 2n, path: '/system.slice/ssh.service', tsNs: 1n });
    expect(records).toHaveLength(0);
    for (let i = 0; i < 10; i++) {
      const id = i.toString(16).padStart(64, 'a');
      resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 100n + BigInt(i), path: `/docker/${id}`, tsNs: 1n });
    }
    expect(records).toHaveLength(10);
    expect(registry.stats()).toMatchObject({ containers: 3, evicted: 7 });
    expect(registry.lookup(100n)).toBeUndefined();
    expect(registry.lookup(109n)?.containerId).toBe((9).toString(16).padStart(64, 'a'));
  });

  it('repeats are not re-emitted: only a real change is (pod status churn stays off the topic)', async () => {
    const { resolver, provider, records, registry } = await setup();
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 900n, path: `/docker/${ID}`, tsNs: 1n });
    provider.push(dockerRecord({ updatedAtNs: 10n }));
    const before = records.length;
    provider.push(dockerRecord({ updatedAtNs: 11n })); // same content, newer timestamp
    expect(records.length).toBe(before);
    expect(registry.stats().unchanged).toBe(1);
    provider.push(dockerRecord({ labels: { team: 'core', tier: 'web' } }));
    expect(records.length).toBe(before + 1);
    expect(records.at(-1)?.labels.tier).toBe('web');
  });

  it("a container never stops before it starts, whatever the runtime's clocks say", async () => {
    const { resolver, provider, records } = await setup();
    // Docker stamps StartedAt after its start call returned, FinishedAt with the shim's exit
    // time: `sh -c 'exit 3'` can finish 0.7 ms before it "started".
    const docker = dockerRecord({ state: 'STOPPED', startedAtNs: 9_000n, stoppedAtNs: 8_000n });
    provider.push(docker); // no cgroup known yet: emitted unjoined, start = stop
    expect(records.at(-1)).toMatchObject({ cgroupId: 0n, startedAtNs: 8_000n, stoppedAtNs: 8_000n });
    // The kernel saw the cgroup made before the process ran: that is the start then.
    resolver.apply({ kind: 'cgroup_mkdir', cgroupId: 601n, path: `/docker/${ID}`, tsNs: 500n });
    resolver.apply({ kind: 'cgroup_rmdir', cgroupId: 601n, path: `/docker/${ID}`, tsNs: 700n });
    const wall = (ns: bigint) => ns + 1_000_000_000_000n;
    provider.push(dockerRecord({ startedAtNs: wall(900n), stoppedAtNs: wall(800n), state: 'STOPPED' }));
    expect(records.at(-1)).toMatchObject({ cgroupId: 601n, state: 'REMOVED', stoppedAtNs: wall(800n) });
    expect(records.at(-1)?.startedAtNs).toBe(wall(500n));
    for (const r of records)
      expect(
        r.stoppedAtNs! >= r.startedAtNs!,
        JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      ).toBe(true);
  });

  it('a container started again does not keep the stop of its previous run', () => {
    const stopped = dockerRecord({ state: 'STOPPED', startedAtNs: 10n, stoppedAtNs: 20n });
    const again = mergeRecords(stopped, dockerRecord({ state: 'RUNNING', startedAtNs: 30n }));
    expect(again).toMatchObject({ state: 'RUNNING', startedAtNs: 30n });
    expect(again.stoppedAtNs).toBeUndefined();
    // A late copy of the old run's start (the pod watch lags) keeps the stop.
    const stale = mergeRecords(stopped, dockerRecord({ state: 'RUNNING', startedAtNs: 10n }));
    expect(stale.stoppedAtNs).toBe(20n);
  });

  it('mergeRecords: later data wins per field, labels merge, empty values never erase', () => {
    const a = dockerRecord({ labels: { a: '1' }, podName: 'p' });
    const b = dockerRecord({ name: '', labels: { b: '2' }, state: 'UNKNOWN', image: 'other' });
    const m = mergeRecords(a, b);
    expect(m).toMatchObject({ name: 'brief', image: 'other', state: 'RUNNING', podName: 'p' });
    expect(m.labels).toEqual({ a: '1', b: '2' });
  });
});
