// A short-lived container, seen from the kernel alone (DESIGN: "a short-lived container's
// cgroup is gone before anyone can look it up: this is why cgroup lifecycle comes from the
// kernel"). The container runs for milliseconds; the capture must still hold its cgroup's
// mkdir (with the container id in the path), its process's exec and exit (code 3) carrying
// that cgroup id, and the rmdir. And a container's TCP socket closed by a reset from the
// host: the state change runs in softirq, where the current task is not the container's
// (DESIGN pitfall 12), and the records must still carry the container's cgroup.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import type { KernelEvent } from '../../collector/src/kernel/decode.js';
import { FLAG } from '../../collector/src/kernel/layout.js';
import type { CgroupMkdir, ProcExec, ProcExit, TcpClose, TcpConnect, TcpReset } from '../../schemas/types.js';
import {
  buildBpf,
  cgroupId,
  cgroupV2Root,
  missingKernel,
  openRecorder,
  ownCgroupId,
  type Recorder,
} from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal } from '../support/real.js';

const { value: endpoint, missing: missingDocker } = endpointOrReason<DockerEndpoint>(inject('docker'));
const missing = missingKernel() ?? missingDocker;

describe('a short-lived container from the kernel', () => {
  let rec: Recorder;
  beforeAll(() => {
    if (missing) return;
    buildBpf();
    rec = openRecorder(['process', 'cgroup', 'tcp']);
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

  itReal(missing)(
    "a container's socket reset by a host peer: close and reset in softirq carry the container's cgroup",
    async () => {
      const { socketPath, image } = endpoint as DockerEndpoint;
      // The host side: a listener in this (non-container) process that answers every
      // connection with a RST. The RST crosses loopback and is processed in softirq on the
      // sending side, so the client socket's reset and close run while this process (or
      // ksoftirqd) is current - never the container's nc.
      const server = createServer((s: Socket) => {
        s.on('error', () => {});
        setTimeout(() => s.resetAndDestroy(), 50);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as AddressInfo).port;
      const docker = createDockerClient({ socketPath });
      const container = await docker.createContainer({
        Image: image,
        // nc waits on stdin (sleep keeps it open) until the host's RST ends the connection.
        Cmd: ['sh', '-c', `sleep 5 | nc 127.0.0.1 ${port}; sleep 1`],
        HostConfig: { NetworkMode: 'host' },
      });
      try {
        await container.start();
        const containerCgroup = cgroupId(join(cgroupV2Root, 'docker', container.id));
        expect(containerCgroup).not.toBe(ownCgroupId());

        const conn = await rec.waitFor(
          (e): e is TcpConnect => e.kind === 'tcp_connect' && e.dport === port,
          10_000,
        );
        // Process context: connect() ran in the container's nc.
        expect(conn.cgroupId).toBe(containerCgroup);
        expect(conn.tgid).not.toBe(process.pid);
        const reset = await rec.waitFor(
          (e): e is TcpReset =>
            e.kind === 'tcp_reset' && e.direction === 1 && e.sport === conn.sport && e.dport === port,
          10_000,
        );
        expect(reset).toMatchObject({ cgroupId: containerCgroup, sockCookie: conn.sockCookie });
        const close = await rec.waitFor(
          (e): e is TcpClose => e.kind === 'tcp_close' && e.sport === conn.sport && e.dport === port,
          10_000,
        );
        expect(close).toMatchObject({
          cgroupId: containerCgroup,
          sockCookie: conn.sockCookie,
          tgid: conn.tgid, // from connect(), not from whatever ran the softirq
          resets: 1,
        });
        expect(close.flags & FLAG.resetReceived).toBe(FLAG.resetReceived);
        // The host side of the same connection is this process's, in this process's cgroup.
        const hostClose = await rec.waitFor(
          (e): e is TcpClose => e.kind === 'tcp_close' && e.sport === port && e.dport === conn.sport,
          10_000,
        );
        expect(hostClose.cgroupId).toBe(ownCgroupId());
      } finally {
        server.close();
        await container.remove({ force: true }).catch(() => {});
      }
    },
  );
});
