// What ktrail records about a containerd container: built from the container's own record
// and task (describe), or from an event when the container is already gone, and how each
// /containers/* and /tasks/* event changes the record known before it.
import * as grpc from '@grpc/grpc-js';
import { parseCgroupPath } from '../cgroup-path.js';
import type { CgroupLookup } from '../cgroup-resolver.js';
import { pathFromProc } from '../cgroup-resolver.js';
import type { ContainerRecord, ContainerState } from '../types.js';
import { wallNs } from '../types.js';
import {
  type Clients,
  call,
  decodeEvent,
  type Envelope,
  type PbContainer,
  type PbProcess,
  type Timestamp,
  tsToNs,
} from './containerd-api.js';

// CRI labels the kubelet's runtime (containerd's CRI plugin) puts on every container.
const CRI_LABELS = {
  podName: 'io.kubernetes.pod.name',
  podNamespace: 'io.kubernetes.pod.namespace',
  podUid: 'io.kubernetes.pod.uid',
  containerName: 'io.kubernetes.container.name',
} as const;

/** nerdctl's label with the name given by `nerdctl run --name` (containerd itself has only ids). */
const NERDCTL_NAME = 'nerdctl/name';

/** What the record rules need: the connected clients, this node's name, the cgroup id lookup. */
export type RecordContext = { clients: Clients; node: string; cgroups?: CgroupLookup | undefined };

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

async function cgroupOf(
  ctx: RecordContext,
  pid: number,
  container: PbContainer,
): Promise<{ path: string; id: bigint }> {
  let path = pid > 0 ? await pathFromProc(pid) : '';
  if (path === '' && container.spec?.value) {
    try {
      const spec = JSON.parse(container.spec.value.toString('utf8')) as {
        linux?: { cgroupsPath?: string };
      };
      if (spec.linux?.cgroupsPath) path = cgroupsPathToPath(spec.linux.cgroupsPath);
    } catch {}
  }
  const id = path !== '' ? ((await ctx.cgroups?.idOfPath(path)) ?? 0n) : 0n;
  return { path, id };
}

/** What a container's id, image and labels say (the CRI labels name the pod). */
function baseRecord(
  node: string,
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

/** A container as containerd describes it now: its record, its task's state, pid and times. */
export async function describe(
  ctx: RecordContext,
  ns: string,
  container: PbContainer,
  process?: PbProcess,
): Promise<ContainerRecord> {
  const c = ctx.clients;
  let proc = process;
  if (!proc) {
    try {
      proc = (await call(c.tasks.Get, c.tasks, { container_id: container.id }, ns)).process;
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.NOT_FOUND) throw err;
    }
  }
  const cg = await cgroupOf(ctx, proc?.pid ?? 0, container);
  const labels = { ...container.labels };
  const state: ContainerState =
    proc?.status === 'RUNNING' || proc?.status === 'PAUSED'
      ? 'RUNNING'
      : proc?.status === 'STOPPED'
        ? 'STOPPED'
        : 'CREATED';
  const record = baseRecord(ctx.node, ns, container.id, container.image, labels, cg);
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

async function getContainer(ctx: RecordContext, ns: string, id: string): Promise<PbContainer | undefined> {
  const c = ctx.clients;
  const res = await call(c.containers.List, c.containers, { filters: [`id==${id}`] }, ns);
  return res.containers[0];
}

/** A container event's own fields, for a container already gone from containerd's store. */
function fromEvent(node: string, ns: string, id: string, ev: Record<string, unknown>): ContainerRecord {
  const labels = (ev.labels as Record<string, string> | undefined) ?? {};
  return baseRecord(
    node,
    ns,
    id,
    typeof ev.image === 'string' ? ev.image : '',
    { ...labels },
    { path: '', id: 0n },
  );
}

/** The id of the container an event is about, when it is one ktrail follows. */
export function eventContainerId(env: Envelope): { id: string; ev: Record<string, unknown> } | undefined {
  const ev = decodeEvent(env.event);
  const id = (ev?.container_id ?? ev?.id) as string | undefined;
  return ev && id ? { id, ev } : undefined;
}

/**
 * The record after event `env` about container `id`, given the record known before it
 * (`prev`); undefined when the event changes nothing ktrail records.
 */
export async function recordAfterEvent(
  ctx: RecordContext,
  env: Envelope,
  id: string,
  ev: Record<string, unknown>,
  prev: ContainerRecord | undefined,
): Promise<ContainerRecord | undefined> {
  const ns = env.namespace;
  const at = tsToNs(env.timestamp) ?? wallNs();
  switch (env.topic) {
    case '/containers/create':
    case '/containers/update': {
      const container = await getContainer(ctx, ns, id);
      // Deleted already (it lived a few ms): the event itself carries the image (and an
      // update the labels), which is all a plain containerd container is named by.
      const record = container
        ? await describe(ctx, ns, container)
        : prev !== undefined
          ? { ...prev }
          : fromEvent(ctx.node, ns, id, ev);
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
      return record;
    }
    case '/tasks/start': {
      const container = await getContainer(ctx, ns, id);
      const base = container ? await describe(ctx, ns, container) : prev;
      if (!base) return undefined;
      const pid = Number(ev.pid ?? 0);
      if (base.cgroupId === 0n && pid > 0 && container) {
        const cg = await cgroupOf(ctx, pid, container);
        base.cgroupId = cg.id;
        base.cgroupPath = cg.path;
      }
      const started: ContainerRecord = { ...base, state: 'RUNNING', startedAtNs: at };
      delete started.stoppedAtNs;
      return started;
    }
    case '/tasks/exit': {
      // Exec'd processes exit too; only the init process (id == container id) ends the container.
      if (ev.id !== undefined && ev.id !== '' && ev.id !== id) return undefined;
      const base = prev ?? (await getContainer(ctx, ns, id).then((c) => c && describe(ctx, ns, c)));
      if (!base) return undefined;
      return { ...base, state: 'STOPPED', stoppedAtNs: tsToNs(ev.exited_at as Timestamp) ?? at };
    }
    case '/containers/delete':
      return prev && { ...prev, state: 'REMOVED', stoppedAtNs: prev.stoppedAtNs ?? at };
  }
  return undefined;
}
