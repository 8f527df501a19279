// containerd metadata: containerd's own gRPC API over its unix socket (containerd-api.ts).
// List containers and their tasks in every namespace at start, then follow the events
// service (/containers/* and /tasks/*), so CRI pods (namespace k8s.io, CRI labels
// io.kubernetes.*) and plain containerd containers get records with their start and exit
// times (containerd-records.ts).
//
// Why not the `ctr` CLI: one process per lookup, no event stream worth the name (`ctr events`
// prints text), and its output format is not an API.
import { hostname } from 'node:os';
import type * as grpc from '@grpc/grpc-js';
import { createLogger } from '../../../../common/log.js';
import type { CgroupLookup } from '../cgroup-resolver.js';
import type { ContainerRecord, MetadataProvider } from '../types.js';
import { wallNs } from '../types.js';
import { type Clients, call, containerdClients, type Envelope } from './containerd-api.js';
import { describe, eventContainerId, type RecordContext, recordAfterEvent } from './containerd-records.js';
import { createReconnector } from './reconnect.js';

export { cgroupsPathToPath } from './containerd-records.js';

const log = createLogger('collector.containers.containerd');

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

  function publish(ns: string, record: ContainerRecord): void {
    record.updatedAtNs = wallNs();
    if (record.state === 'REMOVED') known.delete(`${ns}/${record.containerId}`);
    else known.set(`${ns}/${record.containerId}`, record);
    onRecord(record);
  }

  async function handle(env: Envelope): Promise<void> {
    if (skip.has(env.namespace)) return;
    if (options.namespaces && !options.namespaces.includes(env.namespace)) return;
    const subject = eventContainerId(env);
    if (!subject) return;
    const prev = known.get(`${env.namespace}/${subject.id}`);
    const record = await recordAfterEvent(context(), env, subject.id, subject.ev, prev);
    if (record) publish(env.namespace, record);
  }

  function context(): RecordContext {
    return { clients: clients!, node, cgroups: options.cgroups };
  }

  async function namespaces(c: Clients): Promise<string[]> {
    if (options.namespaces) return options.namespaces;
    const res = await call(c.namespaces.List, c.namespaces, {});
    return res.namespaces.map((n) => n.name).filter((n) => !skip.has(n));
  }

  async function listAll(): Promise<void> {
    const c = clients!;
    for (const ns of await namespaces(c)) {
      const res = await call(c.containers.List, c.containers, {}, ns);
      for (const container of res.containers) {
        try {
          publish(ns, await describe(context(), ns, container));
        } catch (err) {
          log.warn({ err, ns, id: container.id }, 'describe failed during the initial list');
        }
      }
    }
  }

  async function connect(): Promise<void> {
    clients ??= containerdClients(socketPath);
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
