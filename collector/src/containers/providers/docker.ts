// Docker metadata: the Engine API over its unix socket (./docker-api.ts). List every container at
// start, then follow the events stream (start, die, destroy, rename) and turn each into a
// ContainerRecord. Short-lived containers: `docker run --rm` may be destroyed before we can
// inspect it, so the event's own attributes (name, image, labels) and times are the fallback.
// When dockerd goes away, reconnect with backoff and replay the missed events with `since`.
import type { IncomingMessage } from 'node:http';
import { hostname } from 'node:os';
import { createLogger } from '../../../../common/log.js';
import { parseCgroupPath } from '../cgroup-path.js';
import { type HierarchyInfo, pathFromProc } from '../cgroup-resolver.js';
import {
  type ContainerRecord,
  type ContainerState,
  type MetadataProvider,
  rfc3339ToNs,
  wallNs,
} from '../types.js';
import { type ContainerInspect, createDockerClient, DockerApiError } from './docker-api.js';
import { createReconnector } from './reconnect.js';

const log = createLogger('collector.containers.docker');

/** What the provider needs from the cgroup resolver (kept narrow for testing and reuse). */
export type CgroupLookup = {
  hierarchy: HierarchyInfo;
  idOfPath(path: string): Promise<bigint | undefined>;
};

export type DockerProviderOptions = {
  socketPath?: string;
  node?: string;
  cgroups?: CgroupLookup;
  /** Reconnect backoff bounds (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
};

type DockerEvent = {
  Type?: string;
  Action?: string;
  id?: string;
  time?: number;
  timeNano?: number;
  timeNanoExact?: bigint;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
};

const ACTIONS = ['create', 'start', 'die', 'destroy', 'rename'];
// Event attributes that are not labels (everything else in Actor.Attributes is a label).
const NON_LABEL_ATTRS = new Set(['image', 'name', 'exitCode', 'oldName', 'signal', 'execDuration']);

export function createDockerProvider(options: DockerProviderOptions = {}): MetadataProvider & {
  readonly connected: boolean;
  readonly reconnects: number;
} {
  const socketPath = options.socketPath ?? '/var/run/docker.sock';
  const node = options.node ?? hostname();
  const docker = createDockerClient({ socketPath });
  let onRecord: (r: ContainerRecord) => void = () => {};
  let stopped = false;
  let connected = false;
  let stream: IncomingMessage | undefined;
  let lastEventSec = 0;
  let cgroupDriver = 'cgroupfs';
  // Last record per container, so a die/rename keeps what the start knew.
  const known = new Map<string, ContainerRecord>();

  async function cgroupOf(
    id: string,
    pid: number,
    parent: string | undefined,
  ): Promise<{ path: string; id: bigint }> {
    let path = '';
    if (pid > 0) path = await pathFromProc(pid, options.cgroups?.hierarchy);
    if (path === '') {
      // Not running (any more): the path the runtime would have used for this driver.
      if (cgroupDriver === 'systemd') path = `/${parent || 'system.slice'}/docker-${id}.scope`;
      else path = `${(parent || '/docker').replace(/\/$/, '')}/${id}`;
      if (!path.startsWith('/')) path = '/' + path;
    }
    const cgroupId = (await options.cgroups?.idOfPath(path)) ?? 0n;
    return { path, id: cgroupId };
  }

  async function fromInspect(id: string): Promise<ContainerRecord | undefined> {
    let info: ContainerInspect;
    try {
      info = await docker.inspectContainer(id);
    } catch (err) {
      if (err instanceof DockerApiError && err.statusCode === 404) return undefined; // already removed
      throw err;
    }
    const cg = await cgroupOf(info.Id, info.State.Pid, info.HostConfig.CgroupParent);
    const state: ContainerState = info.State.Running
      ? 'RUNNING'
      : info.State.Status === 'created'
        ? 'CREATED'
        : 'STOPPED';
    const record: ContainerRecord = {
      node,
      cgroupId: cg.id,
      cgroupPath: cg.path,
      runtime: 'docker',
      containerId: info.Id,
      name: info.Name.replace(/^\//, ''),
      image: info.Config.Image,
      imageId: info.Image,
      labels: { ...(info.Config.Labels ?? {}) },
      updatedAtNs: wallNs(),
      state,
    };
    const started = rfc3339ToNs(info.State.StartedAt);
    if (started !== undefined) record.startedAtNs = started;
    const finished = rfc3339ToNs(info.State.FinishedAt);
    if (finished !== undefined && !info.State.Running) record.stoppedAtNs = finished;
    const identity = parseCgroupPath(cg.path);
    if (identity?.podUid !== undefined) record.podUid = identity.podUid;
    return record;
  }

  /** A record built from the event alone (container already gone, or inspect failed). */
  function fromEvent(ev: DockerEvent, id: string): ContainerRecord {
    const attrs = ev.Actor?.Attributes ?? {};
    const prev = known.get(id);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (!NON_LABEL_ATTRS.has(k)) labels[k] = v;
    const record: ContainerRecord = prev
      ? { ...prev, labels: { ...prev.labels, ...labels } }
      : {
          node,
          cgroupId: 0n,
          cgroupPath: cgroupDriver === 'systemd' ? `/system.slice/docker-${id}.scope` : `/docker/${id}`,
          runtime: 'docker',
          containerId: id,
          name: attrs.name ?? '',
          image: attrs.image ?? '',
          labels,
          updatedAtNs: wallNs(),
          state: 'UNKNOWN',
        };
    // Every container event names the container and its image, also after it is gone.
    if (attrs.name) record.name = attrs.name;
    if (attrs.image) record.image = attrs.image;
    return record;
  }

  async function handle(ev: DockerEvent): Promise<void> {
    if (ev.Type !== 'container' || !ev.Action) return;
    const action = ev.Action.split(':')[0]!;
    if (!ACTIONS.includes(action)) return;
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    if (ev.time) lastEventSec = Math.max(lastEventSec, ev.time);
    const eventNs = ev.timeNanoExact ?? (ev.timeNano !== undefined ? BigInt(ev.timeNano) : wallNs());
    let record: ContainerRecord | undefined;
    if (action !== 'destroy') {
      try {
        record = await fromInspect(id);
      } catch (err) {
        log.warn({ err, id, action }, 'inspect failed; using the event attributes');
      }
    }
    record ??= fromEvent(ev, id);
    // The event is the authority on what just happened, even if inspect already sees later state.
    switch (action) {
      case 'create':
        if (record.state === 'UNKNOWN') record.state = 'CREATED';
        break;
      case 'start':
        if (record.state === 'UNKNOWN') record.state = 'RUNNING';
        record.startedAtNs ??= eventNs;
        break;
      case 'die':
        record.state = 'STOPPED';
        record.stoppedAtNs ??= eventNs;
        record.startedAtNs ??= known.get(id)?.startedAtNs ?? eventNs;
        break;
      case 'destroy':
        record.state = 'REMOVED';
        record.stoppedAtNs ??= eventNs;
        break;
      case 'rename':
        break;
    }
    record.updatedAtNs = wallNs();
    if (action === 'destroy') known.delete(id);
    else known.set(id, record);
    onRecord(record);
  }

  async function listAll(): Promise<void> {
    const containers = await docker.listContainers({ all: true });
    for (const c of containers) {
      try {
        const record = await fromInspect(c.Id);
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
    const s = await docker.events({
      ...(since !== undefined ? { since } : {}),
      filters: { type: ['container'], event: ACTIONS },
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
        let ev: DockerEvent;
        try {
          ev = JSON.parse(line) as DockerEvent;
          // timeNano passes 2^53: JSON numbers would round it, take the digits as they are.
          const nano = /"timeNano":(\d+)/.exec(line)?.[1];
          if (nano !== undefined) ev.timeNanoExact = BigInt(nano);
        } catch {
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
    const info = await docker.info();
    cgroupDriver = info.CgroupDriver ?? 'cgroupfs';
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
      log.info({ socketPath, node, cgroupDriver, containers: known.size }, 'docker provider started');
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
