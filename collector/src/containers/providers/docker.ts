// Docker metadata: the Engine API over its unix socket (./docker-api.ts). List every container at
// start, then follow the events stream (start, die, destroy, rename) and turn each into a
// ContainerRecord (./docker-records.ts). Short-lived containers: `docker run --rm` may be
// destroyed before we can inspect it, so the event's own attributes (name, image, labels) and
// times are the fallback. When dockerd goes away, reconnect with backoff and replay the missed
// events with `since`.
import type { IncomingMessage } from 'node:http';
import { hostname } from 'node:os';
import { createLogger } from '../../../../common/log.js';
import type { CgroupLookup } from '../cgroup-resolver.js';
import { type ContainerRecord, type MetadataProvider, wallNs } from '../types.js';
import { createDockerClient } from './docker-api.js';
import {
  applyEventAction,
  DOCKER_ACTIONS,
  type DockerEvent,
  type DockerRecordContext,
  parseDockerEvent,
  recordFromEvent,
  recordFromInspect,
} from './docker-records.js';
import { createReconnector } from './reconnect.js';

const log = createLogger('collector.containers.docker');

export type DockerProviderOptions = {
  socketPath?: string;
  node?: string;
  cgroups?: CgroupLookup;
  /** Reconnect backoff bounds (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
};

export function createDockerProvider(options: DockerProviderOptions = {}): MetadataProvider & {
  readonly connected: boolean;
  readonly reconnects: number;
} {
  const socketPath = options.socketPath ?? '/var/run/docker.sock';
  const ctx: DockerRecordContext = {
    docker: createDockerClient({ socketPath }),
    node: options.node ?? hostname(),
    cgroups: options.cgroups,
    cgroupDriver: 'cgroupfs',
  };
  let onRecord: (r: ContainerRecord) => void = () => {};
  let stopped = false;
  let connected = false;
  let stream: IncomingMessage | undefined;
  let lastEventSec = 0;
  // Last record per container, so a die/rename keeps what the start knew.
  const known = new Map<string, ContainerRecord>();

  async function handle(ev: DockerEvent): Promise<void> {
    if (ev.Type !== 'container' || !ev.Action) return;
    const action = ev.Action.split(':')[0]!;
    if (!DOCKER_ACTIONS.includes(action)) return;
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    if (ev.time) lastEventSec = Math.max(lastEventSec, ev.time);
    const eventNs = ev.timeNanoExact ?? (ev.timeNano !== undefined ? BigInt(ev.timeNano) : wallNs());
    let record: ContainerRecord | undefined;
    if (action !== 'destroy') {
      try {
        record = await recordFromInspect(ctx, id);
      } catch (err) {
        log.warn({ err, id, action }, 'inspect failed; using the event attributes');
      }
    }
    const prev = known.get(id);
    record ??= recordFromEvent(ctx, ev, id, prev);
    applyEventAction(record, action, eventNs, prev);
    if (action === 'destroy') known.delete(id);
    else known.set(id, record);
    onRecord(record);
  }

  async function listAll(): Promise<void> {
    const containers = await ctx.docker.listContainers({ all: true });
    for (const c of containers) {
      try {
        const record = await recordFromInspect(ctx, c.Id);
        if (!record) continue;
        known.set(c.Id, record);
        onRecord(record);
      } catch (err) {
        log.warn({ err, id: c.Id }, 'inspect failed during the initial list');
      }
    }
  }

  async function follow(): Promise<void> {
    const since = lastEventSec > 0 ? lastEventSec : undefined;
    const s = await ctx.docker.events({
      ...(since !== undefined ? { since } : {}),
      filters: { type: ['container'], event: DOCKER_ACTIONS },
    });
    stream = s;
    connected = true;
    let buffered = '';
    // Events are handled one at a time, in order: a die must not overtake its start.
    let chain = Promise.resolve();
    s.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
        if (line === '') continue;
        const ev = parseDockerEvent(line);
        if (!ev) {
          log.warn({ line: line.slice(0, 200) }, 'unparsable docker event');
          continue;
        }
        chain = chain
          .then(() => handle(ev))
          .catch((err) => log.warn({ err }, 'docker event handling failed'));
      }
    });
    const lost = (why: string, err?: unknown) => {
      if (stream !== s) return;
      stream = undefined;
      connected = false;
      if (stopped) return;
      log.warn({ err, why }, 'docker events stream lost; reconnecting');
      reconnector.schedule();
    };
    s.on('end', () => lost('end'));
    s.on('close', () => lost('close'));
    s.on('error', (err) => lost('error', err));
  }

  async function connect(): Promise<void> {
    const info = await ctx.docker.info();
    ctx.cgroupDriver = info.CgroupDriver ?? 'cgroupfs';
    // Subscribe before listing so nothing falls between the list and the stream.
    if (lastEventSec === 0) lastEventSec = Math.floor(Date.now() / 1000) - 1;
    await follow();
    await listAll();
  }

  const reconnector = createReconnector({
    what: 'docker',
    log,
    minBackoffMs: options.minBackoffMs,
    maxBackoffMs: options.maxBackoffMs,
    stopped: () => stopped,
    connect,
  });

  return {
    get connected() {
      return connected;
    },
    get reconnects() {
      return reconnector.reconnects;
    },
    async start(cb) {
      onRecord = cb;
      stopped = false;
      await connect();
      log.info(
        { socketPath, node: ctx.node, cgroupDriver: ctx.cgroupDriver, containers: known.size },
        'docker provider started',
      );
    },
    async stop() {
      stopped = true;
      reconnector.cancel();
      const s = stream;
      stream = undefined;
      connected = false;
      s?.destroy();
    },
  };
}
