// containerd metadata: containerd's own gRPC API over its unix socket (@grpc/grpc-js with
// the vendored containerd protos, loaded by @grpc/proto-loader). List containers and their
// tasks in every namespace at start, then follow the events service (/containers/* and
// /tasks/*), so CRI pods (namespace k8s.io, CRI labels io.kubernetes.*) and plain containerd
// containers get records with their start and exit times.
//
// Why not the `ctr` CLI: one process per lookup, no event stream worth the name (`ctr events`
// prints text), and its output format is not an API.
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { createLogger } from '../../../../common/log.js';
import { REPO_ROOT } from '../../../../common/repo-root.js';
import { parseCgroupPath } from '../cgroup-path.js';
import { pathFromProc } from '../cgroup-resolver.js';
import type { ContainerRecord, ContainerState, MetadataProvider } from '../types.js';
import { wallNs } from '../types.js';
import type { CgroupLookup } from './docker.js';
import { createReconnector } from './reconnect.js';

const log = createLogger('collector.containers.containerd');

const PROTO_DIR = `${join(REPO_ROOT, 'collector/src/containers/providers/containerd-api')}/`;
const API = 'github.com/containerd/containerd/api';
const SERVICE_FILES = [
  `${API}/services/containers/v1/containers.proto`,
  `${API}/services/tasks/v1/tasks.proto`,
  `${API}/services/events/v1/events.proto`,
  `${API}/services/namespaces/v1/namespace.proto`,
];
const EVENT_FILES = [`${API}/events/container.proto`, `${API}/events/task.proto`];

// CRI labels the kubelet's runtime (containerd's CRI plugin) puts on every container.
const CRI_LABELS = {
  podName: 'io.kubernetes.pod.name',
  podNamespace: 'io.kubernetes.pod.namespace',
  podUid: 'io.kubernetes.pod.uid',
  containerName: 'io.kubernetes.container.name',
} as const;

/** nerdctl's label with the name given by `nerdctl run --name` (containerd itself has only ids). */
const NERDCTL_NAME = 'nerdctl/name';

export type ContainerdProviderOptions = {
  socketPath?: string;
  node?: string;
  cgroups?: CgroupLookup;
  /** Namespaces to watch; default: all of them except `skipNamespaces`. */
  namespaces?: string[];
  /** Default ['moby']: Docker's containers, which the Docker provider describes better. */
  skipNamespaces?: string[];
  minBackoffMs?: number;
  maxBackoffMs?: number;
};

type Timestamp = { seconds?: string | number; nanos?: number } | null | undefined;
type Any = { type_url?: string; value?: Buffer } | null | undefined;
type PbContainer = {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime?: { name?: string };
  spec?: Any;
  created_at?: Timestamp;
  updated_at?: Timestamp;
};
type PbProcess = { pid: number; status: string; exited_at?: Timestamp };
type Envelope = { timestamp?: Timestamp; namespace: string; topic: string; event?: Any };

type Unary<Req, Res> = (
  req: Req,
  metadata: grpc.Metadata,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => void;
type Clients = {
  containers: grpc.Client & { List: Unary<{ filters?: string[] }, { containers: PbContainer[] }> };
  tasks: grpc.Client & { Get: Unary<{ container_id: string }, { process: PbProcess }> };
  events: grpc.Client & { Subscribe(req: { filters: string[] }): grpc.ClientReadableStream<Envelope> };
  namespaces: grpc.Client & { List: Unary<{ filter?: string }, { namespaces: { name: string }[] }> };
};

let cachedDefinition: grpc.GrpcObject | undefined;
let cachedEvents: protobuf.Root | undefined;

function serviceDefinitions(): grpc.GrpcObject {
  cachedDefinition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(SERVICE_FILES, {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return cachedDefinition;
}

/** The event payload types (TaskStart, TaskExit, ContainerCreate ...), to decode Any values. */
function eventTypes(): protobuf.Root {
  if (!cachedEvents) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith('google/') ? target : PROTO_DIR + target);
    root.loadSync(EVENT_FILES, { keepCase: true });
    cachedEvents = root;
  }
  return cachedEvents;
}

function tsToNs(ts: Timestamp): bigint | undefined {
  if (!ts || ts.seconds === undefined) return undefined;
  const s = BigInt(ts.seconds);
  if (s <= 0n) return undefined; // Go zero time
  return s * 1_000_000_000n + BigInt(ts.nanos ?? 0);
}

/** Decodes an event's Any payload (type_url "containerd.events.TaskExit" ...). */
function decodeEvent(any: Any): Record<string, unknown> | undefined {
  if (!any?.type_url || !any.value) return undefined;
  const name = any.type_url.replace(/^.*\//, '');
  let type: protobuf.Type;
  try {
    type = eventTypes().lookupType(name);
  } catch {
    return undefined;
  }
  return type.toObject(type.decode(any.value), { longs: String, defaults: true }) as Record<string, unknown>;
}

/**
 * OCI cgroupsPath -> path in the hierarchy. systemd form "parent.slice:prefix:name" becomes
 * /<expanded slices>/<prefix>-<name>.scope (a-b-c.slice lives in /a.slice/a-b.slice/a-b-c.slice).
 */
export function cgroupsPathToPath(cgroupsPath: string): string {
  const parts = cgroupsPath.split(':');
  if (parts.length !== 3) return cgroupsPath.startsWith('/') ? cgroupsPath : '/' + cgroupsPath;
  const [slice, prefix, name] = parts as [string, string, string];
  const dirs: string[] = [];
  if (slice !== '' && slice !== '-.slice') {
    const base = slice.replace(/\.slice$/, '');
    const pieces = base.split('-');
    for (let i = 1; i <= pieces.length; i++) dirs.push(pieces.slice(0, i).join('-') + '.slice');
  } else dirs.push('system.slice');
  return '/' + [...dirs, `${prefix}-${name}.scope`].join('/');
}

export function createContainerdProvider(options: ContainerdProviderOptions = {}): MetadataProvider & {
  readonly connected: boolean;
  readonly reconnects: number;
} {
  const socketPath = options.socketPath ?? '/run/containerd/containerd.sock';
  const node = options.node ?? hostname();
  const skip = new Set(options.skipNamespaces ?? ['moby']);
  let clients: Clients | undefined;
  let stream: grpc.ClientReadableStream<Envelope> | undefined;
  let onRecord: (r: ContainerRecord) => void = () => {};
  let stopped = false;
  let connected = false;
  const known = new Map<string, ContainerRecord>(); // key: namespace/id

  function makeClients(): Clients {
    const def = serviceDefinitions() as unknown as {
      containerd: { services: Record<string, { v1: Record<string, grpc.ServiceClientConstructor> }> };
    };
    const target = `unix://${socketPath}`;
    const creds = grpc.credentials.createInsecure();
    const s = def.containerd.services;
    return {
      containers: new s.containers!.v1.Containers!(target, creds) as unknown as Clients['containers'],
      tasks: new s.tasks!.v1.Tasks!(target, creds) as unknown as Clients['tasks'],
      events: new s.events!.v1.Events!(target, creds) as unknown as Clients['events'],
      namespaces: new s.namespaces!.v1.Namespaces!(target, creds) as unknown as Clients['namespaces'],
    };
  }

  function call<Req, Res>(fn: Unary<Req, Res>, self: grpc.Client, req: Req, ns?: string): Promise<Res> {
    const md = new grpc.Metadata();
    if (ns !== undefined) md.set('containerd-namespace', ns);
    return new Promise((resolve, reject) =>
      fn.call(self, req, md, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  async function namespaces(c: Clients): Promise<string[]> {
    if (options.namespaces) return options.namespaces;
    const res = await call(c.namespaces.List, c.namespaces, {});
    return res.namespaces.map((n) => n.name).filter((n) => !skip.has(n));
  }

  async function cgroupOf(pid: number, container: PbContainer): Promise<{ path: string; id: bigint }> {
    let path = pid > 0 ? await pathFromProc(pid) : '';
    if (path === '' && container.spec?.value) {
      try {
        const spec = JSON.parse(container.spec.value.toString('utf8')) as {
          linux?: { cgroupsPath?: string };
        };
        if (spec.linux?.cgroupsPath) path = cgroupsPathToPath(spec.linux.cgroupsPath);
      } catch {}
    }
    const id = path !== '' ? ((await options.cgroups?.idOfPath(path)) ?? 0n) : 0n;
    return { path, id };
  }

  /** What a container's id, image and labels say (the CRI labels name the pod). */
  function baseRecord(
    ns: string,
    id: string,
    image: string,
    labels: Record<string, string>,
    cg: { path: string; id: bigint },
  ): ContainerRecord {
    const record: ContainerRecord = {
      node,
      cgroupId: cg.id,
      cgroupPath: cg.path,
      runtime: 'containerd',
      containerId: id,
      // CRI's pod sandbox (pause) container has no container name; Kubernetes calls it POD.
      name:
        labels[CRI_LABELS.containerName] ??
        labels[NERDCTL_NAME] ??
        (labels['io.cri-containerd.kind'] === 'sandbox' ? 'POD' : id),
      image,
      labels,
      updatedAtNs: wallNs(),
      state: 'UNKNOWN',
      runtimeNamespace: ns,
    };
    const podName = labels[CRI_LABELS.podName];
    const podNamespace = labels[CRI_LABELS.podNamespace];
    const podUid = labels[CRI_LABELS.podUid];
    if (podName !== undefined) record.podName = podName;
    if (podNamespace !== undefined) record.namespace = podNamespace;
    if (podUid !== undefined) record.podUid = podUid;
    return record;
  }

  async function describe(ns: string, container: PbContainer, process?: PbProcess): Promise<ContainerRecord> {
    const c = clients!;
    let proc = process;
    if (!proc) {
      try {
        proc = (await call(c.tasks.Get, c.tasks, { container_id: container.id }, ns)).process;
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.NOT_FOUND) throw err;
      }
    }
    const cg = await cgroupOf(proc?.pid ?? 0, container);
    const labels = { ...container.labels };
    const state: ContainerState =
      proc?.status === 'RUNNING' || proc?.status === 'PAUSED'
        ? 'RUNNING'
        : proc?.status === 'STOPPED'
          ? 'STOPPED'
          : 'CREATED';
    const record = baseRecord(ns, container.id, container.image, labels, cg);
    record.state = state;
    const podUid = record.podUid ?? parseCgroupPath(cg.path)?.podUid;
    if (podUid !== undefined) record.podUid = podUid;
    const exited = tsToNs(proc?.exited_at);
    if (state === 'STOPPED' && exited !== undefined) record.stoppedAtNs = exited;
    // containerd keeps no task start time; the container's creation is the closest it has
    // (a start seen in the event stream replaces it).
    const created = tsToNs(container.created_at);
    if (created !== undefined && state !== 'CREATED') record.startedAtNs = created;
    return record;
  }

  async function getContainer(ns: string, id: string): Promise<PbContainer | undefined> {
    const c = clients!;
    const res = await call(c.containers.List, c.containers, { filters: [`id==${id}`] }, ns);
    return res.containers[0];
  }

  /** A container event's own fields, for a container already gone from containerd's store. */
  function fromEvent(ns: string, id: string, ev: Record<string, unknown>): ContainerRecord {
    const labels = (ev.labels as Record<string, string> | undefined) ?? {};
    return baseRecord(
      ns,
      id,
      typeof ev.image === 'string' ? ev.image : '',
      { ...labels },
      { path: '', id: 0n },
    );
  }

  function publish(ns: string, record: ContainerRecord): void {
    record.updatedAtNs = wallNs();
    if (record.state === 'REMOVED') known.delete(`${ns}/${record.containerId}`);
    else known.set(`${ns}/${record.containerId}`, record);
    onRecord(record);
  }

  async function handle(env: Envelope): Promise<void> {
    if (skip.has(env.namespace)) return;
    if (options.namespaces && !options.namespaces.includes(env.namespace)) return;
    const ev = decodeEvent(env.event);
    if (!ev) return;
    const id = (ev.container_id ?? ev.id) as string | undefined;
    if (!id) return;
    const at = tsToNs(env.timestamp) ?? wallNs();
    const key = `${env.namespace}/${id}`;
    const prev = known.get(key);
    switch (env.topic) {
      case '/containers/create':
      case '/containers/update': {
        const container = await getContainer(env.namespace, id);
        // Deleted already (it lived a few ms): the event itself carries the image (and an
        // update the labels), which is all a plain containerd container is named by.
        const record = container
          ? await describe(env.namespace, container)
          : prev !== undefined
            ? { ...prev }
            : fromEvent(env.namespace, id, ev);
        // Events are handled in order; describe() sees the present, which may be later.
        if (env.topic === '/containers/create') {
          record.state = 'CREATED';
          delete record.startedAtNs;
          delete record.stoppedAtNs;
        } else if (prev) {
          record.state = prev.state;
          if (prev.startedAtNs !== undefined) record.startedAtNs = prev.startedAtNs;
          if (prev.stoppedAtNs !== undefined) record.stoppedAtNs = prev.stoppedAtNs;
        }
        publish(env.namespace, record);
        return;
      }
      case '/tasks/start': {
        const container = await getContainer(env.namespace, id);
        const base = container ? await describe(env.namespace, container) : prev;
        if (!base) return;
        const pid = Number(ev.pid ?? 0);
        if (base.cgroupId === 0n && pid > 0 && container) {
          const cg = await cgroupOf(pid, container);
          base.cgroupId = cg.id;
          base.cgroupPath = cg.path;
        }
        const started: ContainerRecord = { ...base, state: 'RUNNING', startedAtNs: at };
        delete started.stoppedAtNs;
        publish(env.namespace, started);
        return;
      }
      case '/tasks/exit': {
        // Exec'd processes exit too; only the init process (id == container id) ends the container.
        if (ev.id !== undefined && ev.id !== '' && ev.id !== id) return;
        const base =
          prev ?? (await getContainer(env.namespace, id).then((c) => c && describe(env.namespace, c)));
        if (!base) return;
        publish(env.namespace, {
          ...base,
          state: 'STOPPED',
          stoppedAtNs: tsToNs(ev.exited_at as Timestamp) ?? at,
        });
        return;
      }
      case '/containers/delete': {
        if (!prev) return;
        publish(env.namespace, { ...prev, state: 'REMOVED', stoppedAtNs: prev.stoppedAtNs ?? at });
        return;
      }
    }
  }

  async function listAll(): Promise<void> {
    const c = clients!;
    for (const ns of await namespaces(c)) {
      const res = await call(c.containers.List, c.containers, {}, ns);
      for (const container of res.containers) {
        try {
          publish(ns, await describe(ns, container));
        } catch (err) {
          log.warn({ err, ns, id: container.id }, 'describe failed during the initial list');
        }
      }
    }
  }

  async function connect(): Promise<void> {
    clients ??= makeClients();
    const c = clients;
    // Subscribe first so nothing falls between the list and the stream.
    const s = c.events.Subscribe({ filters: ['topic~="^/containers/"', 'topic~="^/tasks/"'] });
    stream = s;
    let chain = Promise.resolve();
    s.on('data', (env: Envelope) => {
      chain = chain
        .then(() => handle(env))
        .catch((err) => log.warn({ err, topic: env.topic }, 'event handling failed'));
    });
    let listing = true;
    const lost = (why: string, err?: unknown) => {
      if (stream !== s) return;
      stream = undefined;
      connected = false;
      // During connect() the failure is connect()'s to report (one retry loop, not two).
      if (stopped || listing) return;
      log.warn(
        { why, err: (err as Error | undefined)?.message },
        'containerd event stream lost; reconnecting',
      );
      reconnector.schedule();
    };
    s.on('error', (err) => lost('error', err));
    s.on('end', () => lost('end'));
    try {
      await listAll(); // fails fast when containerd is not there
    } finally {
      listing = false;
    }
    if (stream !== s) throw new Error('containerd event stream lost while listing');
    connected = true;
  }

  /** Cancels the event stream (a failed connect, or stop()). */
  function dropStream(): void {
    const s = stream;
    stream = undefined;
    s?.cancel();
  }

  const reconnector = createReconnector({
    what: 'containerd',
    log,
    minBackoffMs: options.minBackoffMs,
    maxBackoffMs: options.maxBackoffMs,
    stopped: () => stopped,
    connect,
    onFailure: dropStream,
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
      try {
        await connect();
      } catch (err) {
        dropStream();
        throw err;
      }
      log.info({ socketPath, node, containers: known.size }, 'containerd provider started');
    },
    async stop() {
      stopped = true;
      reconnector.cancel();
      connected = false;
      dropStream();
      if (clients) for (const client of Object.values(clients)) (client as grpc.Client).close();
      clients = undefined;
    },
  };
}
