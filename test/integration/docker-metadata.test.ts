// The Docker metadata provider against the real dockerd: a named, labelled container gives a
// record with its name, image, labels, cgroup id, start and then stop time; a short-lived
// (~100 ms, --rm) container still gets a record with its name, labels and both times, even
// though it is gone before anyone could inspect it. Then the registry joins provider records
// with the cgroup resolver's view of the same container.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, inject } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry } from '../../collector/src/containers/index.js';
import { createDockerProvider } from '../../collector/src/containers/providers/docker.js';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { cgroupId } from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const { value: endpoint, missing } = endpointOrReason<DockerEndpoint>(inject('docker'));
const gate = itReal(missing ?? missingRoot());
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

const tag = () => randomBytes(4).toString('hex');

describe('docker metadata provider (real dockerd)', () => {
  gate(
    'a named, labelled container: name, image, labels, cgroup id, start then stop time',
    async () => {
      const { socketPath, image } = endpoint!;
      const docker = createDockerClient({ socketPath });
      const resolver = await CgroupResolver.create();
      const records: ContainerRecord[] = [];
      const provider = createDockerProvider({ socketPath, node: `node-${tag()}`, cgroups: resolver });
      await provider.start((r) => records.push(r));
      cleanup.push(() => provider.stop());

      const name = `ktrail-meta-${tag()}`;
      const labels = { 'ktrail.test': name, 'app.kubernetes.io/name': 'web' };
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '60'],
        name,
        Labels: labels,
        HostConfig: { NetworkMode: 'none' },
      });
      cleanup.push(() => container.remove({ force: true }));
      const beforeStartNs = BigInt(Date.now() - 1000) * 1_000_000n;
      await container.start();
      const info = await container.inspect();

      const running = await waitFor('RUNNING record', () =>
        records.find((r) => r.containerId === info.Id && r.state === 'RUNNING'),
      );
      expect(running.name).toBe(name);
      expect(running.image).toBe(image);
      expect(running.imageId).toBe(info.Image);
      expect(running.labels).toMatchObject(labels);
      expect(running.runtime).toBe('docker');
      expect(running.startedAtNs).toBeGreaterThan(beforeStartNs);
      expect(running.stoppedAtNs).toBeUndefined();
      // The cgroup the kernel reports for this container's processes.
      const inode = cgroupId(join(resolver.hierarchy.mountPoint, running.cgroupPath));
      expect(running.cgroupPath).toContain(info.Id);
      expect(running.cgroupId).toBe(inode);

      await container.kill();
      const stopped = await waitFor('STOPPED record', () =>
        records.find((r) => r.containerId === info.Id && r.state === 'STOPPED'),
      );
      expect(stopped.stoppedAtNs).toBeGreaterThan(running.startedAtNs!);
      expect(stopped.startedAtNs).toBe(running.startedAtNs);
      expect(stopped.name).toBe(name);

      await container.remove();
      const removed = await waitFor('REMOVED record', () =>
        records.find((r) => r.containerId === info.Id && r.state === 'REMOVED'),
      );
      expect(removed.labels).toMatchObject(labels);
      expect(removed.name).toBe(name);
    },
    60_000,
  );

  gate(
    'a short-lived --rm container (~100 ms) still gets a record with name, labels, start and stop',
    async () => {
      const { socketPath, image } = endpoint!;
      const docker = createDockerClient({ socketPath });
      const records: ContainerRecord[] = [];
      const provider = createDockerProvider({ socketPath, node: `node-${tag()}` });
      await provider.start((r) => records.push(r));
      cleanup.push(() => provider.stop());

      const name = `ktrail-brief-${tag()}`;
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '0.1'],
        name,
        Labels: { 'ktrail.test': name },
        HostConfig: { NetworkMode: 'none', AutoRemove: true },
      });
      const id = container.id;
      await container.start();

      const removed = await waitFor('REMOVED record', () =>
        records.find((r) => r.containerId === id && r.state === 'REMOVED'),
      );
      const mine = records.filter((r) => r.containerId === id);
      expect(mine.every((r) => r.name === name)).toBe(true);
      expect(removed.labels['ktrail.test']).toBe(name);
      expect(removed.image).toBe(image);
      expect(removed.startedAtNs).toBeDefined();
      expect(removed.stoppedAtNs).toBeDefined();
      const livedMs = Number(removed.stoppedAtNs! - removed.startedAtNs!) / 1e6;
      expect(livedMs).toBeGreaterThan(50);
      expect(livedMs).toBeLessThan(5000);
      expect(mine.some((r) => r.state === 'STOPPED')).toBe(true);
    },
    60_000,
  );

  gate(
    'the registry joins provider records with the resolver: one record per (cgroup id, change)',
    async () => {
      const { socketPath, image } = endpoint!;
      const docker = createDockerClient({ socketPath });
      const name = `ktrail-join-${tag()}`;
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '60'],
        name,
        HostConfig: { NetworkMode: 'none' },
      });
      cleanup.push(() => container.remove({ force: true }));
      await container.start();
      const info = await container.inspect();

      // The resolver's startup scan sees the live cgroup before the provider speaks.
      const resolver = await CgroupResolver.create();
      const records: ContainerRecord[] = [];
      const node = `node-${tag()}`;
      const registry = new ContainerRegistry({
        node,
        resolver,
        providers: [createDockerProvider({ socketPath, node, cgroups: resolver })],
        onRecord: (r) => records.push(r),
      });
      await registry.start();
      cleanup.push(() => registry.stop());

      const inode = cgroupId(join(resolver.hierarchy.mountPoint, 'docker', info.Id));
      const joined = await waitFor('joined record', () =>
        records.find((r) => r.containerId === info.Id && r.name === name && r.cgroupId === inode),
      );
      expect(joined.node).toBe(node);
      expect(joined.state).toBe('RUNNING');
      expect(registry.lookup(inode)?.name).toBe(name);
      expect(records.filter((r) => r.containerId === info.Id).every((r) => r.cgroupId === inode)).toBe(true);
    },
    60_000,
  );
});
