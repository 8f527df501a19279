// The Docker provider survives a dockerd restart: it notices the lost event stream, retries
// with backoff while the daemon is down, reconnects, and describes containers started after
// the restart. Uses a private dockerd (own socket, data and exec roots, vfs storage) so the
// shared daemon other tests use is never restarted.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject } from 'vitest';
import { createDockerProvider } from '../../collector/src/containers/providers/docker.js';
import { createDockerClient } from '../../collector/src/containers/providers/docker-api.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const { missing } = endpointOrReason<DockerEndpoint>(inject('docker'));
const dockerScript = fileURLToPath(new URL('../../deploy/local/docker.sh', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ktrail-dockerd-'));
const socketPath = join(dir, 'docker.sock');
let daemon: ChildProcess | undefined;

async function startDaemon(): Promise<void> {
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  for (const d of ['data', 'exec']) mkdirSync(join(dir, d), { recursive: true });
  daemon = spawn(
    'dockerd',
    [
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--ip-masq=false',
      '--storage-driver=vfs',
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${join(dir, 'docker.pid')}`,
      `-H=unix://${socketPath}`,
    ],
    { stdio: ['ignore', log, log] },
  );
  const docker = createDockerClient({ socketPath });
  await waitFor(
    'private dockerd',
    () =>
      docker.ping().then(
        () => true as const,
        () => undefined,
      ),
    60_000,
  );
}

async function stopDaemon(): Promise<void> {
  const d = daemon;
  daemon = undefined;
  if (!d || d.exitCode !== null) return;
  const exited = new Promise((r) => d.once('exit', r));
  d.kill('SIGTERM');
  await exited;
}

afterAll(async () => {
  await stopDaemon();
  rmSync(dir, { recursive: true, force: true });
});

describe('docker provider reconnects', () => {
  itReal(missing ?? missingRoot())(
    'dockerd stops and comes back: the provider reconnects and sees new containers',
    async () => {
      await startDaemon();
      await run(dockerScript, ['image'], { env: { ...process.env, KTRAIL_DOCKER_SOCK: socketPath } });
      const records: ContainerRecord[] = [];
      const provider = createDockerProvider({ socketPath, node: 'n1', minBackoffMs: 100, maxBackoffMs: 400 });
      await provider.start((r) => records.push(r));
      expect(provider.connected).toBe(true);

      await stopDaemon();
      await waitFor('disconnect noticed', () => (provider.connected ? undefined : true), 60_000);
      await new Promise((r) => setTimeout(r, 1000)); // a few failed retries while it is down
      expect(provider.connected).toBe(false);

      await startDaemon();
      await waitFor(
        'reconnect',
        () => (provider.connected && provider.reconnects >= 1 ? true : undefined),
        60_000,
      );

      const name = `ktrail-after-restart-${randomBytes(3).toString('hex')}`;
      const docker = createDockerClient({ socketPath });
      const container = await docker.createContainer({
        Image: 'ktrail/busybox:latest',
        Cmd: ['sleep', '0.2'],
        name,
        Labels: { phase: 'after-restart' },
        HostConfig: { NetworkMode: 'none', AutoRemove: true },
      });
      await container.start();
      const rec = await waitFor(
        'record after restart',
        () => records.find((r) => r.name === name && r.state === 'REMOVED'),
        60_000,
      );
      expect(rec.labels.phase).toBe('after-restart');
      await provider.stop();
    },
    120_000,
  );
});
