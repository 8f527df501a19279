// A short-lived container, seen from the kernel alone (DESIGN: "a short-lived container's
// cgroup is gone before anyone can look it up: this is why cgroup lifecycle comes from the
// kernel"). The container runs for milliseconds; the capture must still hold its cgroup's
// mkdir (with the container id in the path), its process's exec and exit (code 3) carrying
// that cgroup id, and the rmdir.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import type { KernelEvent } from '../../collector/src/kernel/decode.js';
import type { CgroupMkdir, ProcExec, ProcExit } from '../../schemas/types.js';
import { buildBpf, missingKernel, openRecorder, type Recorder } from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal } from '../support/real.js';

const { value: endpoint, missing: missingDocker } = endpointOrReason<DockerEndpoint>(inject('docker'));
const missing = missingKernel() ?? missingDocker;

describe('a short-lived container from the kernel', () => {
  let rec: Recorder;
  beforeAll(() => {
    if (missing) return;
    buildBpf();
    rec = openRecorder(['process', 'cgroup']);
  });
  afterAll(() => rec?.close());

  itReal(missing)('cgroup mkdir/rmdir, exec and exit code, all tied by the cgroup id', async () => {
    const { socketPath, image } = endpoint as DockerEndpoint;
    const docker = createDockerClient({ socketPath });
    const token = `ktrail-${randomBytes(4).toString('hex')}`;
    const container = await docker.createContainer({
      Image: image,
      Cmd: ['sh', '-c', `echo ${token}; exit 3`],
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await container.start();
      const result = await container.wait();
      expect(result.StatusCode).toBe(3);
      const id = container.id;

      // Docker's cgroupfs driver: /docker/<id>; systemd driver: .../docker-<id>.scope.
      const mk = await rec.waitFor(
        (e): e is CgroupMkdir => e.kind === 'cgroup_mkdir' && e.path.includes(id),
        10_000,
      );
      expect(mk.hierarchyId).toBe(0);
      const inContainer = (e: KernelEvent) => e.cgroupId === mk.cgroupId;
      const exec = await rec.waitFor(
        (e): e is ProcExec =>
          e.kind === 'proc_exec' && inContainer(e) && e.args.includes(`echo ${token}; exit 3`),
      );
      expect(exec.args.slice(0, 2)).toEqual(['sh', '-c']);
      const exit = await rec.waitFor((e): e is ProcExit => e.kind === 'proc_exit' && e.tgid === exec.tgid);
      expect(exit).toMatchObject({ exitCode: 3, signal: 0, cgroupId: mk.cgroupId });
      // The cgroup goes away when the container stops (before or at removal).
      await container.remove({ force: true });
      const rm = await rec.waitFor((e) => e.kind === 'cgroup_rmdir' && e.cgroupId === mk.cgroupId, 10_000);
      expect(rm.tsNs).toBeGreaterThan(exit.tsNs);
    } finally {
      await container.remove({ force: true }).catch(() => {});
    }
  });
});
