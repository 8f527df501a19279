// A real schema registry (Apicurio Registry, deploy/local/registry.sh) for the tests that need
// one. The global setup installs it (idempotent) and, when the run ends, stops every
// instance the tests started and deletes its directory; each test file starts its own on a
// free loopback port (so it can stop, kill or restart it without disturbing anyone) and
// stops it in afterAll.
// Instances live under <cache>/registry/test-<port>, where `./ktrail stop` finds them too.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { topicNames } from '../../common/kafka-topics.js';
import { deleteTopics, type KafkaEndpoint } from './kafka.js';
import { freePorts } from './ports.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const script = join(ROOT, 'deploy/local/registry.sh');
const instancesDir = (): string => join(process.env.KTRAIL_CACHE ?? join(ROOT, '.cache'), 'registry');

export type RegistryInstall = { installed: true };

/** `registry.sh install` (skipped when already there): the global setup runs it once per run. */
export async function ensureRegistryInstalled(): Promise<RegistryInstall> {
  try {
    await run('bash', [script, 'install'], { maxBuffer: 16 * 1024 * 1024, timeout: 900_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `registry.sh install failed: ${(e.stderr ?? e.message).trim().split('\n').slice(-3).join(' ')}`,
    );
  }
  return { installed: true };
}

export interface RegistryInstance {
  /** The Confluent API base: http://127.0.0.1:<port>/apis/ccompat/v7 */
  readonly url: string;
  readonly port: number;
  /** Starts it again on the same port (file storage: with the same schemas and ids). */
  start(): Promise<void>;
  /** SIGTERM (a clean stop); `kill` = SIGKILL, a crash. */
  stop(options?: { kill?: boolean }): Promise<void>;
  /** SIGSTOP / SIGCONT: a registry that hangs (accepts connections, answers nothing). */
  freeze(): void;
  thaw(): void;
}

async function registrySh(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run('bash', [script, ...args], { env: { ...process.env, ...env }, timeout: 180_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `registry.sh ${args.join(' ')} failed: ${[e.stdout, e.stderr].join('\n').trim() || e.message}`,
    );
  }
}

/**
 * Starts an instance on a free port. `storage: 'file'` keeps schemas and ids across
 * stop/start (outage tests); the default is the in-memory storage.
 */
export async function startRegistry(options: { storage?: 'mem' | 'file' } = {}): Promise<RegistryInstance> {
  const [port] = (await freePorts(1)) as [number];
  const dir = join(instancesDir(), `test-${port}`);
  rmSync(dir, { recursive: true, force: true }); // an earlier run's, with its database
  const env = {
    KTRAIL_REGISTRY_PORT: String(port),
    KTRAIL_REGISTRY_DIR: dir,
    KTRAIL_REGISTRY_STORAGE: options.storage ?? 'mem',
  };
  const pid = (): number => Number(readFileSync(join(dir, 'registry.pid'), 'utf8'));
  const instance: RegistryInstance = {
    url: `http://127.0.0.1:${port}/apis/ccompat/v7`,
    port,
    start: () => registrySh(['start'], env),
    stop: (o = {}) => registrySh(o.kill ? ['stop', '--kill'] : ['stop'], env),
    freeze: () => process.kill(pid(), 'SIGSTOP'),
    thaw: () => process.kill(pid(), 'SIGCONT'),
  };
  await instance.start();
  return instance;
}

/** Stops every instance the tests started and deletes their directories (global teardown). */
export async function stopTestRegistries(): Promise<void> {
  const base = instancesDir();
  if (!existsSync(base)) return;
  const dirs = readdirSync(base).filter((d) => d.startsWith('test-'));
  for (const d of dirs) {
    const dir = join(base, d);
    if (existsSync(join(dir, 'registry.pid')))
      await registrySh(['stop'], { KTRAIL_REGISTRY_DIR: dir }).catch((err: Error) =>
        console.warn(`[registry] ${err.message}`),
      );
    if (!existsSync(join(dir, 'registry.pid'))) rmSync(dir, { recursive: true, force: true });
  }
}

/** What a registry test file started, undone in its afterAll: store, registry, topics, work dir. */
export async function endRegistryRun(run: {
  store?: { close(): Promise<void> } | undefined;
  registry?: RegistryInstance | undefined;
  kafka?: KafkaEndpoint | undefined;
  prefixes: string[];
  work: string;
}): Promise<void> {
  await run.store?.close();
  await run.registry?.stop();
  if (run.kafka)
    await deleteTopics(
      run.kafka,
      run.prefixes.flatMap((p) => Object.values(topicNames(p))),
    );
  rmSync(run.work, { recursive: true, force: true });
}
