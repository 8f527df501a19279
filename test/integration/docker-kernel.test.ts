// The whole identity chain for a container too short-lived to look up: the real kernel's
// cgroup_mkdir/cgroup_rmdir events (bpf/cgroup.bpf.o through the native addon) feed the
// resolver, the real dockerd's event stream names the container, and the registry joins
// them into records that carry the kernel's cgroup id. The Docker provider gets no cgroup
// lookup here, so the cgroup id can only have come from the kernel.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry } from '../../collector/src/containers/index.js';
import { createDockerProvider } from '../../collector/src/containers/providers/docker.js';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { buildBpf, missingKernel, openRecorder, type Recorder } from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const { value: endpoint, missing } = endpointOrReason<DockerEndpoint>(inject('docker'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('short-lived container: kernel cgroup events + docker events -> joined record', () => {
  itReal(missing ?? missingRoot() ?? missingKernel())(
    'a 100 ms --rm container gets a record with its name, labels and the kernel cgroup id',
    async () => {
      const { socketPath, image } = endpoint!;
      buildBpf();
      const rec: Recorder = openRecorder(['cgroup']);
      cleanup.push(() => rec.close());
      const resolver = await CgroupResolver.create();
      // Kernel events -> resolver, as the collector's cgroup observer does.
      let seen = 0;
      const pump = setInterval(() => {
        for (; seen < rec.events.length; seen++) {
          const e = rec.events[seen]!;
          if (e.kind === 'cgroup_mkdir' || e.kind === 'cgroup_rmdir' || e.kind === 'cgroup_rename')
            resolver.apply({ ...e, truncated: (e.flags & 1) !== 0 });
        }
      }, 5);
      cleanup.push(() => clearInterval(pump));

      const records: ContainerRecord[] = [];
      const node = `node-${randomBytes(3).toString('hex')}`;
      const registry = new ContainerRegistry({
        node,
        resolver,
        providers: [createDockerProvider({ socketPath, node })], // no cgroup lookup on purpose
        onRecord: (r) => records.push(r),
      });
      await registry.start();
      cleanup.push(() => registry.stop());

      const name = `ktrail-flash-${randomBytes(3).toString('hex')}`;
      const docker = createDockerClient({ socketPath });
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '0.1'],
        name,
        Labels: { 'ktrail.test': name },
        HostConfig: { NetworkMode: 'none', AutoRemove: true },
      });
      const id = container.id;
      await container.start();

      // The kernel saw the container's cgroup come and go...
      const mkdir = await rec.waitFor((e) => e.kind === 'cgroup_mkdir' && e.path === `/docker/${id}`, 30_000);
      await rec.waitFor((e) => e.kind === 'cgroup_rmdir' && e.cgroupId === mkdir.cgroupId, 30_000);
      // ...and the joined record names it, with that cgroup id, after the cgroup is gone.
      const joined = await waitFor(
        'joined REMOVED record with the name',
        () => records.find((r) => r.containerId === id && r.cgroupId === mkdir.cgroupId && r.name === name),
        30_000,
      );
      expect(joined.labels['ktrail.test']).toBe(name);
      expect(joined.image).toBe(image);
      const last = await waitFor(
        'final record',
        () => records.filter((r) => r.containerId === id && r.state === 'REMOVED' && r.name === name).at(-1),
        30_000,
      );
      expect(last.cgroupId).toBe(mkdir.cgroupId);
      expect(last.startedAtNs).toBeDefined();
      expect(last.stoppedAtNs! - last.startedAtNs!).toBeGreaterThan(50_000_000n);
      expect(last.stoppedAtNs! - last.startedAtNs!).toBeLessThan(10_000_000_000n);
      expect(resolver.resolve(mkdir.cgroupId)?.identity?.containerId).toBe(id); // within the grace period
    },
    90_000,
  );
});
