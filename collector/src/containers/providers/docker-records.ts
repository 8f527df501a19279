// What ktrail records about a Docker container: built from `inspect`, or from an event's own
// attributes when the container is already gone (`docker run --rm`), and what each container
// event (create, start, die, destroy, rename) says about its state and times.
import { parseCgroupPath } from '../cgroup-path.js';
import { type CgroupLookup, pathFromProc } from '../cgroup-resolver.js';
import { type ContainerRecord, type ContainerState, rfc3339ToNs, wallNs } from '../types.js';
import { type ContainerInspect, DockerApiError, type DockerClient } from './docker-api.js';

export type DockerEvent = {
  Type?: string;
  Action?: string;
  id?: string;
  time?: number;
  timeNano?: number;
  timeNanoExact?: bigint;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
};

/** What the record rules need: the Engine API client, this node, the cgroup id lookup, the driver. */
export type DockerRecordContext = {
  docker: DockerClient;
  node: string;
  cgroups?: CgroupLookup | undefined;
  cgroupDriver: string;
};

export const DOCKER_ACTIONS = ['create', 'start', 'die', 'destroy', 'rename'];
// Event attributes that are not labels (everything else in Actor.Attributes is a label).
const NON_LABEL_ATTRS = new Set(['image', 'name', 'exitCode', 'oldName', 'signal', 'execDuration']);

async function cgroupOf(
  ctx: DockerRecordContext,
  id: string,
  pid: number,
  parent: string | undefined,
): Promise<{ path: string; id: bigint }> {
  let path = '';
  if (pid > 0) path = await pathFromProc(pid, ctx.cgroups?.hierarchy);
  if (path === '') {
    // Not running (any more): the path the runtime would have used for this driver.
    if (ctx.cgroupDriver === 'systemd') path = `/${parent || 'system.slice'}/docker-${id}.scope`;
    else path = `${(parent || '/docker').replace(/\/$/, '')}/${id}`;
    if (!path.startsWith('/')) path = '/' + path;
  }
  const cgroupId = (await ctx.cgroups?.idOfPath(path)) ?? 0n;
  return { path, id: cgroupId };
}

/** The container as `inspect` describes it now; undefined when it is already removed. */
export async function recordFromInspect(
  ctx: DockerRecordContext,
  id: string,
): Promise<ContainerRecord | undefined> {
  let info: ContainerInspect;
  try {
    info = await ctx.docker.inspectContainer(id);
  } catch (err) {
    if (err instanceof DockerApiError && err.statusCode === 404) return undefined;
    throw err;
  }
  const cg = await cgroupOf(ctx, info.Id, info.State.Pid, info.HostConfig.CgroupParent);
  const state: ContainerState = info.State.Running
    ? 'RUNNING'
    : info.State.Status === 'created'
      ? 'CREATED'
      : 'STOPPED';
  const record: ContainerRecord = {
    node: ctx.node,
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
export function recordFromEvent(
  ctx: DockerRecordContext,
  ev: DockerEvent,
  id: string,
  prev: ContainerRecord | undefined,
): ContainerRecord {
  const attrs = ev.Actor?.Attributes ?? {};
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!NON_LABEL_ATTRS.has(k)) labels[k] = v;
  const record: ContainerRecord = prev
    ? { ...prev, labels: { ...prev.labels, ...labels } }
    : {
        node: ctx.node,
        cgroupId: 0n,
        cgroupPath: ctx.cgroupDriver === 'systemd' ? `/system.slice/docker-${id}.scope` : `/docker/${id}`,
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

/**
 * Applies what event `action` says to `record` (the event is the authority on what just
 * happened, even when inspect already sees a later state). `prev` is the record before it.
 */
export function applyEventAction(
  record: ContainerRecord,
  action: string,
  eventNs: bigint,
  prev: ContainerRecord | undefined,
): void {
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
      record.startedAtNs ??= prev?.startedAtNs ?? eventNs;
      break;
    case 'destroy':
      record.state = 'REMOVED';
      record.stoppedAtNs ??= eventNs;
      break;
  }
  record.updatedAtNs = wallNs();
}

/** One line of the events stream; undefined when it is not JSON. */
export function parseDockerEvent(line: string): DockerEvent | undefined {
  try {
    const ev = JSON.parse(line) as DockerEvent;
    // timeNano passes 2^53: JSON numbers would round it, take the digits as they are.
    const nano = /"timeNano":(\d+)/.exec(line)?.[1];
    if (nano !== undefined) ev.timeNanoExact = BigInt(nano);
    return ev;
  } catch {
    return undefined;
  }
}
