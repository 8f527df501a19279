// The Docker Engine API client (collector/src/containers/providers/docker-api.ts) against the
// real dockerd: the API version it settles on, errors that carry the HTTP status and Docker's
// message, and the events stream. Then the provider's stream loss without restarting the
// shared dockerd: a unix-socket relay in front of it cuts every connection and refuses new
// ones for a while; the provider notices, reconnects, and replays what happened meanwhile.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject } from 'vitest';
import { createDockerProvider } from '../../collector/src/containers/providers/docker.js';
import {
  compareApiVersions,
  createDockerClient,
  DockerApiError,
  MAX_API_VERSION,
} from '../../collector/src/containers/providers/docker-api.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import type { DockerEndpoint } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const { value: endpoint, missing } = endpointOrReason<DockerEndpoint>(inject('docker'));
const gate = itReal(missing ?? missingRoot());
const dir = mkdtempSync(join(tmpdir(), 'ktrail-docker-api-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

const tag = () => randomBytes(4).toString('hex');

/** A relay from `path` to dockerd's socket that can cut its connections and refuse new ones. */
async function relay(path: string, target: string) {
  const open = new Set<Socket>();
  const requests: string[] = [];
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const daemon = connect(target);
    for (const s of [client, daemon]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => {});
    }
    client.once('data', (c: Buffer) => requests.push(c.toString('latin1').split('\r\n')[0] ?? ''));
    client.pipe(daemon).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    /** The request line of every connection so far. */
    requests,
    /** Cuts every open connection and refuses new ones until resume(). */
    cut() {
      refusing = true;
      for (const s of open) s.destroy();
    },
    resume() {
      refusing = false;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('docker engine API client (real dockerd)', () => {
  gate('speaks the daemon API version, capped at the newest it reads', async () => {
    const r = await relay(join(dir, 'version.sock'), endpoint!.socketPath);
    cleanup.push(() => r.close());
    const docker = createDockerClient({ socketPath: join(dir, 'version.sock') });
    const info = await docker.info();
    expect(info.CgroupDriver).toMatch(/^(cgroupfs|systemd)$/);
    expect(Array.isArray(await docker.listContainers({ all: true }))).toBe(true);
    // Negotiated once, as the docker CLI does: the daemon's version unless newer than ours.
    const offered = await pingVersion(endpoint!.socketPath);
    const expected = compareApiVersions(offered, MAX_API_VERSION) < 0 ? offered : MAX_API_VERSION;
    expect(r.requests).toEqual([
      'GET /_ping HTTP/1.1',
      `GET /v${expected}/info HTTP/1.1`,
      `GET /v${expected}/containers/json?all=true HTTP/1.1`,
    ]);
    expect(compareApiVersions('1.41', '1.47')).toBe(-1);
    expect(compareApiVersions('1.47', '1.47')).toBe(0);
    expect(compareApiVersions('1.100', '1.47')).toBe(1);
  });

  gate('an error carries the HTTP status and Docker message', async () => {
    const docker = createDockerClient({ socketPath: endpoint!.socketPath });
    const name = `ktrail-no-such-${tag()}`;
    const err = await docker.inspectContainer(name).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DockerApiError);
    expect((err as DockerApiError).statusCode).toBe(404);
    expect((err as DockerApiError).retriable).toBe(false);
    expect((err as Error).message).toMatch(new RegExp(`HTTP 404: No such container: ${name}`));

    const bad = await docker
      .createContainer({ Image: 'ktrail/no-such-image:never', name: `ktrail-bad-${tag()}` })
      .catch((e: unknown) => e);
    expect((bad as DockerApiError).statusCode).toBe(404);
    expect((bad as Error).message).toMatch(/HTTP 404: .*ktrail\/no-such-image/);

    const nowhere = createDockerClient({ socketPath: join(dir, 'nothing.sock') });
    const down = await nowhere.ping().catch((e: unknown) => e);
    expect(down).toBeInstanceOf(DockerApiError);
    expect((down as DockerApiError).statusCode).toBeUndefined();
    expect((down as DockerApiError).retriable).toBe(true);
    expect((down as Error).message).toMatch(/ENOENT/);
  });

  gate('a container lifecycle, and the events stream as JSON lines', async () => {
    const { socketPath, image } = endpoint!;
    const docker = createDockerClient({ socketPath });
    const since = Math.floor(Date.now() / 1000) - 1;
    const container = await docker.createContainer({
      Image: image,
      Cmd: ['sh', '-c', 'exit 7'],
      name: `ktrail-api-${tag()}`,
      Labels: { 'ktrail.test': 'docker-api' },
      HostConfig: { NetworkMode: 'none' },
    });
    cleanup.push(() => container.remove({ force: true }));
    await container.start();
    expect((await container.wait()).StatusCode).toBe(7);
    const info = await container.inspect();
    expect(info.State).toMatchObject({ Running: false, ExitCode: 7, Status: 'exited' });
    expect(info.Config.Labels).toMatchObject({ 'ktrail.test': 'docker-api' });
    await container.remove({ force: true });

    const stream = await docker.events({
      since,
      filters: { type: ['container'], container: [container.id] },
    });
    cleanup.push(() => {
      stream.destroy();
    });
    let text = '';
    stream.on('data', (c: Buffer) => {
      text += c.toString('utf8');
    });
    const actions = await waitFor('create..destroy events', () => {
      const got = text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => (JSON.parse(l) as { Action: string }).Action);
      return got.includes('destroy') ? got : undefined;
    });
    expect(actions).toEqual(['create', 'start', 'die', 'destroy']);
  });

  gate(
    'the provider loses its stream, reconnects, and replays what happened while it was away',
    async () => {
      const { socketPath, image } = endpoint!;
      const relayPath = join(dir, 'relay.sock');
      const r = await relay(relayPath, socketPath);
      cleanup.push(() => r.close());
      const records: ContainerRecord[] = [];
      const provider = createDockerProvider({
        socketPath: relayPath,
        node: `node-${tag()}`,
        minBackoffMs: 100,
        maxBackoffMs: 200,
      });
      await provider.start((rec) => records.push(rec));
      cleanup.push(() => provider.stop());
      expect(provider.connected).toBe(true);

      r.cut();
      await waitFor('stream loss noticed', () => (provider.connected ? undefined : true));
      // While the provider cannot reach dockerd, a container comes and goes.
      const docker = createDockerClient({ socketPath });
      const name = `ktrail-away-${tag()}`;
      const container = await docker.createContainer({
        Image: image,
        Cmd: ['sleep', '0.1'],
        name,
        Labels: { phase: 'while-away' },
        HostConfig: { NetworkMode: 'none', AutoRemove: true },
      });
      await container.start();
      await waitFor('container gone', () =>
        container.inspect().then(
          () => undefined,
          (err: unknown) => ((err as DockerApiError).statusCode === 404 ? true : undefined),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 500)); // failed attempts meanwhile
      expect(provider.connected).toBe(false);
      expect(records.some((rec) => rec.containerId === container.id)).toBe(false);

      r.resume();
      await waitFor('reconnected', () => (provider.connected && provider.reconnects >= 1 ? true : undefined));
      const removed = await waitFor('replayed REMOVED record', () =>
        records.find((rec) => rec.containerId === container.id && rec.state === 'REMOVED'),
      );
      expect(removed.name).toBe(name);
      expect(removed.labels.phase).toBe('while-away');
      expect(records.some((rec) => rec.containerId === container.id && rec.state === 'STOPPED')).toBe(true);
    },
    60_000,
  );
});

/** The API version dockerd offers in its /_ping headers. */
function pingVersion(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath, () => s.write('GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n'));
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    s.on('end', () => {
      const v = /^api-version:\s*(\S+)/im.exec(text)?.[1];
      if (v) resolve(v);
      else reject(new Error(`no API-Version in ${text.slice(0, 200)}`));
    });
    s.on('error', reject);
  });
}
