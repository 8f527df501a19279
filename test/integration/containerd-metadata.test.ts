// The containerd metadata provider against the real containerd (deploy/local/containerd.sh),
// through containerd's gRPC API. Containers are made with `ctr run` in the CRI namespace
// k8s.io with the CRI labels set by hand (there is no kubelet here), the way containerd's CRI
// plugin would label a pod's container.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { createContainerdProvider } from '../../collector/src/containers/providers/containerd.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { cgroupId } from '../support/bpf.js';
import { type ContainerdEndpoint, ensureContainerd } from '../support/docker.js';
import { itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const containerdScript = fileURLToPath(new URL('../../deploy/local/containerd.sh', import.meta.url));
const rootMissing = missingRoot();
const ready: { value?: ContainerdEndpoint; missing?: string } = rootMissing
  ? { missing: rootMissing }
  : await ensureContainerd().then(
      (value) => ({ value }),
      (err: Error) => ({ missing: `containerd unavailable: ${err.message}` }),
    );
const gate = itReal(ready.missing);
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

function ctr(endpoint: ContainerdEndpoint, ...args: string[]) {
  return run('ctr', ['--address', endpoint.socketPath, '-n', endpoint.namespace, ...args]);
}

/** `ctr run -d` of the busybox image with these labels; killed and removed after the file. */
async function ctrRun(ep: ContainerdEndpoint, id: string, labels: Record<string, string>, ...cmd: string[]) {
  cleanup.push(async () => {
    await ctr(ep, 'task', 'kill', '-s', 'KILL', id).catch(() => {});
    await ctr(ep, 'task', 'rm', '-f', id).catch(() => {});
    await ctr(ep, 'container', 'rm', id).catch(() => {});
  });
  const flags = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  await ctr(ep, 'run', '-d', ...flags, ep.image, id, ...cmd);
}

describe('containerd metadata provider (real containerd)', () => {
  gate(
    'a CRI-labelled container: pod name, namespace, uid, container name, cgroup id, start and stop',
    async () => {
      const ep = ready.value!;
      const resolver = await CgroupResolver.create();
      const records: ContainerRecord[] = [];
      const provider = createContainerdProvider({ socketPath: ep.socketPath, node: 'n1', cgroups: resolver });
      await provider.start((r) => records.push(r));
      cleanup.push(() => provider.stop());

      const id = randomBytes(32).toString('hex'); // CRI container ids are 64 hex
      const pod = `web-${randomBytes(3).toString('hex')}`;
      const podUid = '3f0c8a52-1d7e-4b1f-9a65-2c4d7e8f9a01';
      const labels = {
        'io.kubernetes.pod.name': pod,
        'io.kubernetes.pod.namespace': 'shop',
        'io.kubernetes.pod.uid': podUid,
        'io.kubernetes.container.name': 'app',
      };
      await ctrRun(ep, id, labels, 'sleep', '60');

      const running = await waitFor('RUNNING record', () =>
        records.find((r) => r.containerId === id && r.state === 'RUNNING'),
      );
      expect(running).toMatchObject({
        runtime: 'containerd',
        name: 'app',
        podName: pod,
        namespace: 'shop',
        podUid,
        image: ep.image,
      });
      expect(running.labels).toMatchObject(labels);
      expect(running.startedAtNs).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);
      const inode = cgroupId(join(resolver.hierarchy.mountPoint, running.cgroupPath));
      expect(running.cgroupPath).toContain(id);
      expect(running.cgroupId).toBe(inode);

      await ctr(ep, 'task', 'kill', '-s', 'KILL', id);
      const stopped = await waitFor('STOPPED record', () =>
        records.find((r) => r.containerId === id && r.state === 'STOPPED'),
      );
      expect(stopped.stoppedAtNs).toBeGreaterThan(running.startedAtNs!);
      expect(stopped.podName).toBe(pod);

      await ctr(ep, 'task', 'rm', id);
      await ctr(ep, 'container', 'rm', id);
      const removed = await waitFor('REMOVED record', () =>
        records.find((r) => r.containerId === id && r.state === 'REMOVED'),
      );
      expect(removed.name).toBe('app');
    },
    60_000,
  );

  gate(
    'containerd restarts under the provider: it reconnects with backoff and follows new containers',
    async () => {
      const ep = ready.value!;
      const records: ContainerRecord[] = [];
      const provider = createContainerdProvider({
        socketPath: ep.socketPath,
        node: 'n1',
        minBackoffMs: 100,
        maxBackoffMs: 400,
      });
      await provider.start((r) => records.push(r));
      cleanup.push(() => provider.stop());
      expect(provider.connected).toBe(true);

      // Only a containerd that containerd.sh started is stopped (a system one is left alone).
      const stop = await run(containerdScript, ['stop']);
      expect(stop.stdout, 'restart test needs the containerd that containerd.sh started').toContain(
        'containerd stopped',
      );
      await waitFor('disconnect noticed', () => (provider.connected ? undefined : true));
      await new Promise((r) => setTimeout(r, 1000)); // retries while it is down
      expect(provider.connected).toBe(false);
      await run(containerdScript, ['start']);
      await waitFor('reconnect', () => (provider.connected && provider.reconnects >= 1 ? true : undefined));

      const id = randomBytes(32).toString('hex');
      await ctrRun(ep, id, { 'io.kubernetes.container.name': 'after' }, 'sleep', '0.2');
      const stopped = await waitFor('STOPPED record after the restart', () =>
        records.find((r) => r.containerId === id && r.state === 'STOPPED'),
      );
      expect(stopped.name).toBe('after');
      expect(stopped.stoppedAtNs! - stopped.startedAtNs!).toBeGreaterThan(100_000_000n);
    },
    90_000,
  );

  gate(
    'containers that exist before the provider starts are listed with their state',
    async () => {
      const ep = ready.value!;
      const id = randomBytes(32).toString('hex');
      await ctrRun(ep, id, { 'io.kubernetes.container.name': 'early' }, 'sleep', '60');
      const records: ContainerRecord[] = [];
      const provider = createContainerdProvider({ socketPath: ep.socketPath, node: 'n1' });
      await provider.start((r) => records.push(r));
      cleanup.push(() => provider.stop());
      // start() resolves after the initial list: the record is there already.
      const listed = records.find((r) => r.containerId === id);
      expect(listed?.state).toBe('RUNNING');
      expect(listed?.name).toBe('early');
      expect(listed?.cgroupPath).toBe(`/${ep.namespace}/${id}`);
    },
    60_000,
  );
});
