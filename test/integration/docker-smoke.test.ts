// Smoke test of the real local Docker (issue 2, item 5): a container runs in the real dockerd,
// its v2 cgroup id is read from the cgroup filesystem (inode of its cgroup directory, which is
// what bpf_get_current_cgroup_id() reports), and the cgroup resolver maps that id back to the
// container id.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, inject } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import { cgroupId as cgroupIdOf } from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';

const { value: endpoint, missing } = endpointOrReason<DockerEndpoint>(inject('docker'));
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanup) await c().catch(() => {});
});

describe('docker smoke', () => {
  itReal(missing ?? missingRoot())(
    'a container runs and the resolver maps its v2 cgroup id to its container id',
    async () => {
      const { socketPath, image } = endpoint!;
      const docker = createDockerClient({ socketPath });
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '60'],
        name: `ktrail-smoke-${randomBytes(4).toString('hex')}`,
        HostConfig: { NetworkMode: 'none', AutoRemove: false },
      });
      cleanup.push(() => container.remove({ force: true }));
      await container.start();
      const info = await container.inspect();
      expect(info.State.Running).toBe(true);
      expect(info.Id).toMatch(/^[0-9a-f]{64}$/);

      const resolver = await CgroupResolver.create();
      expect(resolver.hierarchy.version).toBe(2);
      // The container's own view of its v2 cgroup, then that directory's inode = cgroup id.
      const procCgroup = await readFile(`/proc/${info.State.Pid}/cgroup`, 'utf8');
      const v2Path = /^0::(.*)$/m.exec(procCgroup)?.[1];
      expect(v2Path).toContain(info.Id);
      const cgroupId = cgroupIdOf(join(resolver.hierarchy.mountPoint, v2Path!));
      expect(cgroupId).toBeGreaterThan(1n);

      const entry = resolver.resolve(cgroupId);
      expect(entry?.path).toBe(v2Path);
      expect(entry?.identity?.containerId).toBe(info.Id);
      expect(entry?.identity?.runtime).toBe('docker');
      // And the reverse lookup the Docker provider uses.
      expect(await resolver.idOfPath(v2Path!)).toBe(cgroupId);

      // The v1 fallback (hosts without cgroup v2): the memory hierarchy of this hybrid host
      // names the same container under its own ids.
      const memoryLine = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m.exec(procCgroup);
      if (memoryLine) {
        const v1 = await CgroupResolver.create({ mountPoint: '/sys/fs/cgroup/memory', version: 1 });
        const v1Id = cgroupIdOf(join('/sys/fs/cgroup/memory', memoryLine[1]!));
        expect(v1.resolve(v1Id)?.identity?.containerId).toBe(info.Id);
      }
    },
    60_000,
  );
});
