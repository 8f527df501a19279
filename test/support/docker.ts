// Brings up the real local dockerd and the busybox image for integration tests, through
// deploy/local/docker.sh (the same script a person runs), and hands back where it is.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type DockerEndpoint = { socketPath: string; image: string };

const script = fileURLToPath(new URL('../../deploy/local/docker.sh', import.meta.url));

/** Runs `<script> all`; a failure says which script and the last lines it printed. */
async function runAll(path: string, name: string, timeout: number, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run(path, ['all'], { timeout, env: { ...process.env, ...env } });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    const detail = (e.stderr || e.stdout || e.message).trim().split('\n').slice(-5).join(' | ');
    throw new Error(`deploy/local/${name} all failed: ${detail}`);
  }
}

/** Installs (if needed), starts (or reuses) dockerd and builds the local image. */
export async function ensureDocker(): Promise<DockerEndpoint> {
  if (process.getuid?.() !== 0) throw new Error('needs root to start dockerd and run containers');
  const socketPath = process.env.KTRAIL_DOCKER_SOCK ?? '/var/run/docker.sock';
  const image = process.env.KTRAIL_DOCKER_IMAGE ?? 'ktrail/busybox:latest';
  await runAll(script, 'docker.sh', 600_000, { KTRAIL_DOCKER_SOCK: socketPath });
  return { socketPath, image };
}

export type ContainerdEndpoint = { socketPath: string; image: string; namespace: string };

const containerdScript = fileURLToPath(new URL('../../deploy/local/containerd.sh', import.meta.url));

/**
 * Standalone containerd (not dockerd's private one) with the busybox image imported into the
 * CRI namespace, through deploy/local/containerd.sh. Lives here, beside Docker, because both
 * are the local container runtimes; the global setup does not start it (only its tests need it).
 */
export async function ensureContainerd(): Promise<ContainerdEndpoint> {
  if (process.getuid?.() !== 0) throw new Error('needs root to start containerd and run containers');
  const socketPath = process.env.KTRAIL_CONTAINERD_SOCK ?? '/run/containerd/containerd.sock';
  await runAll(containerdScript, 'containerd.sh', 300_000, { KTRAIL_CONTAINERD_SOCK: socketPath });
  return { socketPath, image: 'docker.io/ktrail/busybox:latest', namespace: 'k8s.io' };
}
