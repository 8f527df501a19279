// Workload identity, in one place: what people name a container by, and what stays the same
// when a container is replaced by the next one of the same workload.
//
// identityColumns(meta) is what every event row, the containers table and the enriched topic
// carry beside the container id (docs/events.md, "Workload identity"), with `workload` the
// row's one name for its workload:
//
//   Kubernetes         <namespace>/<owner name>  (Deployment, StatefulSet, DaemonSet, Job,
//                      CronJob, ...; the pod name for a pod without an owner)
//   Docker Compose     <project>/<service>       (com.docker.compose.* labels: docker, podman,
//                      nerdctl compose)
//   otherwise          the runtime's container name (Docker, podman, containerd)
//   the host           host                      (rows not in any container)
//
// workloadIdentity(meta) is one restart chain of that workload: a crash loop makes a new
// container id on every restart (Docker's rm + run under one name, the kubelet restarting a
// pod's container), so rules that follow a workload over restarts key by this, not by
// container id (DESIGN.md pitfall 15):
//
//   Kubernetes  k8s/<namespace>/<pod uid, else pod name>/<container name>
//   Docker      docker/<node>/<container name>      (podman alike)
//   containerd  containerd/<node>/<containerd namespace>/<container name>
//   otherwise   container/<node>/<container id>   (also while no record names the container)
//
// The pod uid, not the name: a pod re-created under the same name (a StatefulSet's db-0)
// is a new pod. Docker and containerd names are unique per host only, hence the node.
import type { ContainerMeta } from './metadata-table.js';
import type { EventRow } from './partition-batch.js';

/** The CRI label with the Kubernetes container name (Docker via cri-dockerd names containers k8s_<name>_<pod>_..._<attempt>). */
const K8S_CONTAINER_NAME = 'io.kubernetes.container.name';
const COMPOSE_PROJECT = 'com.docker.compose.project';
const COMPOSE_SERVICE = 'com.docker.compose.service';

/** ctr and nerdctl put a container's cgroup at /<namespace>/<id> (cgroupfs driver). */
const CONTAINERD_NAMESPACE = /^\/([^/]+)\/[^/]+$/;

/** The `workload` of rows that ran outside any container. */
export const HOST_WORKLOAD = 'host';

/**
 * The identity columns of an event row, in table order (migration 0009; the enriched topic's
 * EnrichedContainer has the same fields in camelCase).
 */
export const IDENTITY_COLUMNS = [
  'container_id',
  'container_name',
  'image',
  'container_runtime',
  'pod',
  'pod_uid',
  'namespace',
  'k8s_container_name',
  'workload_kind',
  'workload_name',
  'compose_project',
  'compose_service',
  'containerd_namespace',
  'workload',
] as const;

export type IdentityColumns = Record<(typeof IDENTITY_COLUMNS)[number], string>;

/** A row's identity columns before any join: every one empty. */
export const NO_IDENTITY: Readonly<IdentityColumns> = Object.freeze(
  Object.fromEntries(IDENTITY_COLUMNS.map((c) => [c, ''])) as IdentityColumns,
);

/** The identity columns of a host row: only `workload` is set. */
export const HOST_IDENTITY: Readonly<IdentityColumns> = Object.freeze({
  ...NO_IDENTITY,
  workload: HOST_WORKLOAD,
});

/** The pod key and Kubernetes container name when the record is a pod's container. */
function k8sContainer(meta: ContainerMeta): { podKey: string; container: string } | undefined {
  const podKey = meta.podUid !== '' ? meta.podUid : meta.pod;
  const container = meta.labels[K8S_CONTAINER_NAME] ?? meta.name;
  return podKey !== '' && container !== '' && (meta.podUid !== '' || meta.namespace !== '')
    ? { podKey, container }
    : undefined;
}

/** The containerd namespace (k8s.io for CRI, default for ctr and nerdctl); '' for other runtimes. */
function containerdNamespace(meta: ContainerMeta): string {
  if (meta.runtime !== 'containerd') return '';
  if (meta.runtimeNamespace !== '') return meta.runtimeNamespace;
  // Records of collectors that did not send the namespace: the cgroupfs path has it.
  return CONTAINERD_NAMESPACE.exec(meta.cgroupPath)?.[1] ?? '';
}

/** The row's one workload name (see the table at the top). */
function workloadName(meta: ContainerMeta, k8s: boolean, project: string, service: string): string {
  if (k8s) {
    const owner = meta.workload || meta.pod || meta.podUid;
    return meta.namespace !== '' ? `${meta.namespace}/${owner}` : owner;
  }
  if (service !== '') return project !== '' ? `${project}/${service}` : service;
  return meta.name;
}

const cache = new WeakMap<ContainerMeta, IdentityColumns>();

/** The identity columns of rows joined with this record (computed once per record). */
export function identityColumns(meta: ContainerMeta): IdentityColumns {
  let cols = cache.get(meta);
  if (cols !== undefined) return cols;
  const k8s = k8sContainer(meta);
  const project = meta.labels[COMPOSE_PROJECT] ?? '';
  const service = meta.labels[COMPOSE_SERVICE] ?? '';
  cols = {
    container_id: meta.containerId,
    container_name: meta.name,
    image: meta.image,
    container_runtime: meta.runtime,
    pod: meta.pod,
    pod_uid: meta.podUid,
    namespace: meta.namespace,
    k8s_container_name: k8s?.container ?? '',
    workload_kind: meta.workloadKind,
    workload_name: meta.workload,
    compose_project: project,
    compose_service: service,
    containerd_namespace: containerdNamespace(meta),
    workload: workloadName(meta, k8s !== undefined, project, service),
  };
  cache.set(meta, cols);
  return cols;
}

/** The workload a container belongs to, from its record (one identity per restart chain). */
export function workloadIdentity(meta: ContainerMeta): string {
  const k8s = k8sContainer(meta);
  if (k8s !== undefined) return `k8s/${meta.namespace}/${k8s.podKey}/${k8s.container}`;
  if (meta.name !== '') {
    if (meta.runtime === 'docker' || meta.runtime === 'podman')
      return `${meta.runtime}/${meta.node}/${meta.name}`;
    if (meta.runtime === 'containerd')
      return `containerd/${meta.node}/${containerdNamespace(meta)}/${meta.name}`;
  }
  return `container/${meta.node}/${meta.containerId}`;
}

/**
 * A row's workload identity from the container record it was joined with (or, pending, the
 * record that knows its cgroup by path); '' for a row with no record (host, or not known yet).
 */
export function rowWorkload(row: EventRow): string {
  return row.meta === undefined ? '' : workloadIdentity(row.meta);
}
