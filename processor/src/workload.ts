// Workload identity: what stays the same when a container is replaced by the next one of
// the same workload. A crash loop makes a new container id on every restart (Docker's rm +
// run under one name, the kubelet restarting a pod's container), so rules that follow a
// workload over restarts key by this, not by container id (DESIGN.md pitfall 15).
//
//   Kubernetes  k8s/<namespace>/<pod uid, else pod name>/<container name>
//   Docker      docker/<node>/<container name>      (podman alike)
//   containerd  containerd/<node>/<containerd namespace>/<container name>
//   otherwise   container/<node>/<container id>   (also while no record names the container)
//
// The pod uid, not the name: a pod re-created under the same name (a StatefulSet's db-0)
// is a new pod. Docker and containerd names are unique per host only, hence the node.
import type { ContainerMeta } from './metadata-table.js';
import type { Row } from './partition-batch.js';
import { CONTAINER_META } from './rows.js';

/** The CRI label with the Kubernetes container name (Docker via cri-dockerd names containers k8s_<name>_<pod>_..._<attempt>). */
const K8S_CONTAINER_NAME = 'io.kubernetes.container.name';

/** ctr and nerdctl put a container's cgroup at /<namespace>/<id> (cgroupfs driver). */
const CONTAINERD_NAMESPACE = /^\/([^/]+)\/[^/]+$/;

/** The workload a container belongs to, from its record (one identity per restart chain). */
export function workloadIdentity(meta: ContainerMeta): string {
  const podKey = meta.podUid !== '' ? meta.podUid : meta.pod;
  const k8sName = meta.labels[K8S_CONTAINER_NAME] ?? meta.name;
  if (podKey !== '' && k8sName !== '' && (meta.podUid !== '' || meta.namespace !== ''))
    return `k8s/${meta.namespace}/${podKey}/${k8sName}`;
  if (meta.name !== '') {
    if (meta.runtime === 'docker' || meta.runtime === 'podman')
      return `${meta.runtime}/${meta.node}/${meta.name}`;
    if (meta.runtime === 'containerd') {
      const ns = CONTAINERD_NAMESPACE.exec(meta.cgroupPath)?.[1] ?? '';
      return `containerd/${meta.node}/${ns}/${meta.name}`;
    }
  }
  return `container/${meta.node}/${meta.containerId}`;
}

/**
 * A row's workload identity from the container record it was joined with; by container id
 * for a row that has one but no record at hand; '' for a row not joined to a container.
 */
export function rowWorkload(row: Row): string {
  const meta = row[CONTAINER_META] as ContainerMeta | undefined;
  if (meta !== undefined) return workloadIdentity(meta);
  const container = row.container_id;
  return typeof container === 'string' && container !== ''
    ? `container/${String(row.node)}/${container}`
    : '';
}
