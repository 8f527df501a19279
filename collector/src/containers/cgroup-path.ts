// cgroup path -> container identity, for every runtime and cgroup driver ktrail supports.
//
// The path alone says a lot: the runtime names its scope (docker-, cri-containerd-, crio-,
// libpod-, nerdctl-), the kubelet names the QoS class and pod uid, and the driver shows in
// the naming style (systemd: `*.slice`/`*.scope` units; cgroupfs: plain directories).
// Parsing walks the segments once, left to right, so nested layouts (docker in docker, kind
// nodes, podman's "container" subgroup, systemd inside a container) fall out naturally:
// the innermost container wins, outer ones are kept in `outerContainerIds`.
//
// The table-driven corpus in test/fixtures/cgroup-paths/corpus.json is the specification.

export type ContainerRuntime = 'docker' | 'containerd' | 'cri-o' | 'podman' | 'kubernetes' | 'unknown';
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';
export type CgroupDriver = 'systemd' | 'cgroupfs';

export type ContainerIdentity = {
  /** Who created the container's cgroup. 'kubernetes': kubelet-managed (cgroupfs driver), the
   * path does not name the runtime. 'unknown': a bare container id under an unknown parent. */
  runtime: ContainerRuntime;
  /** Full container id, 64 lowercase hex characters. */
  containerId: string;
  /** Kubernetes pod uid (dashed UUID, or the 32-hex config hash of a static pod). */
  podUid?: string;
  qos?: QosClass;
  driver: CgroupDriver;
  /** Containers this one runs inside, outermost first (docker in docker, kind nodes). */
  outerContainerIds?: string[];
  /** A cgroup below the container's own (podman's "container", systemd's init.scope ...). */
  subgroup?: string;
};

const HEX64 = /^[0-9a-f]{64}$/;
// systemd escapes '-' in unit names, so the kubelet writes pod uids with '_' in slice names.
const POD_UID = /^(?:[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})$/;
// "<prefix>-<64 hex>.scope" (systemd driver) or "<prefix>-<64 hex>" (cri-o/podman cgroupfs).
const PREFIXED = /^(docker|cri-containerd|crio|libpod|nerdctl)-([0-9a-f]{64})(\.scope)?$/;
// Helper processes that live next to a container but are not it.
const CONMON = /^(?:crio|libpod)-conmon-[0-9a-f]{64}(?:\.scope)?$|^conmon$/;
// systemd-driver kubelet slices, with the "kubelet-" root used by kind and some installers:
// kubepods.slice, kubepods-burstable.slice, kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
const KUBE_SLICE = /^(?:kubelet-)?kubepods(?:-(burstable|besteffort))?(?:-pod([^.]+))?\.slice$/;
// Parents under which a bare 64-hex directory is a container of a known runtime (cgroupfs).
const CGROUPFS_PARENTS: Record<string, ContainerRuntime> = {
  docker: 'docker',
  'k8s.io': 'containerd', // containerd namespaces used as cgroup parents by ctr/nerdctl
  default: 'containerd',
  moby: 'containerd',
  libpod_parent: 'podman',
};
const RUNTIME_BY_PREFIX: Record<string, ContainerRuntime> = {
  docker: 'docker',
  'cri-containerd': 'containerd',
  nerdctl: 'containerd',
  crio: 'cri-o',
  libpod: 'podman',
};
// "4:memory:/docker/<id>" or "0::/docker/<id>", as read from /proc/<pid>/cgroup.
const PROC_CGROUP_LINE = /^\d+:[^:/]*:/;

type Found = { id: string; runtime: ContainerRuntime; driver: CgroupDriver; podUid?: string; qos?: QosClass };

/**
 * Whether a cgroup is not the host's: a container's (parseCgroupPath knows it) or inside a
 * kubelet's pod tree (a pod-level cgroup holds no process of the host). The processor marks
 * every other cgroup as the host. The one rule for "is this a container", for both sides.
 */
export function isContainerCgroupPath(path: string): boolean {
  if (parseCgroupPath(path) !== undefined) return true;
  return path.split('/').some((seg) => seg === 'kubepods' || KUBE_SLICE.test(seg));
}

/**
 * Identity of the container a cgroup belongs to, or undefined when the cgroup is not inside a
 * container (root, system services, user sessions, pod-level or conmon cgroups, malformed ids).
 * Accepts a path relative to the hierarchy root ("/docker/<id>", leading slash optional) or a
 * /proc/<pid>/cgroup line.
 */
export function parseCgroupPath(path: string): ContainerIdentity | undefined {
  const clean = PROC_CGROUP_LINE.test(path) ? path.replace(PROC_CGROUP_LINE, '') : path;
  const segments = clean.split('/');
  const outer: string[] = [];
  let found: Found | undefined;
  let subgroup: string[] = [];
  // Kubernetes context seen since the last container segment (it belongs to the next one).
  let inKubepods = false;
  let qos: QosClass | undefined;
  let podUid: string | undefined;
  let parent = '';

  for (const seg of segments) {
    if (seg === '' || seg === '.') continue;

    if (CONMON.test(seg)) return undefined;

    let runtime: ContainerRuntime | undefined;
    let id: string | undefined;
    let driver: CgroupDriver = 'cgroupfs';
    const prefixed = PREFIXED.exec(seg);
    if (prefixed) {
      id = prefixed[2];
      runtime = RUNTIME_BY_PREFIX[prefixed[1]!];
      driver = prefixed[3] ? 'systemd' : 'cgroupfs';
    } else if (HEX64.test(seg)) {
      id = seg;
      runtime = inKubepods && podUid ? 'kubernetes' : (CGROUPFS_PARENTS[parent] ?? 'unknown');
    }

    if (id !== undefined && runtime !== undefined) {
      if (found) outer.push(found.id);
      found = { id, runtime, driver };
      if (podUid !== undefined) found.podUid = podUid;
      if (qos !== undefined) found.qos = qos;
      subgroup = [];
      inKubepods = false;
      podUid = undefined;
      qos = undefined;
      parent = seg;
      continue;
    }

    const kube = KUBE_SLICE.exec(seg);
    if (kube) {
      inKubepods = true;
      if (kube[1]) qos = kube[1] as QosClass;
      if (kube[2] !== undefined) {
        if (!POD_UID.test(kube[2])) return undefined; // malformed pod slice
        podUid = kube[2].replaceAll('_', '-');
        qos ??= 'guaranteed'; // guaranteed pods sit directly under kubepods
      }
    } else if (seg === 'kubepods') {
      inKubepods = true;
    } else if (inKubepods && (seg === 'burstable' || seg === 'besteffort') && podUid === undefined) {
      qos = seg;
    } else if (inKubepods && seg.startsWith('pod') && podUid === undefined) {
      const uid = seg.slice(3);
      if (!POD_UID.test(uid)) return undefined;
      podUid = uid.replaceAll('_', '-');
      qos ??= 'guaranteed';
    }
    // Anything below a container that is not itself a container stays that container's.
    if (found) subgroup.push(seg);
    parent = seg;
  }

  if (!found) return undefined;
  const identity: ContainerIdentity = { runtime: found.runtime, containerId: found.id, driver: found.driver };
  if (found.podUid !== undefined) identity.podUid = found.podUid;
  if (found.qos !== undefined) identity.qos = found.qos;
  if (outer.length > 0) identity.outerContainerIds = outer;
  if (subgroup.length > 0) identity.subgroup = subgroup.join('/');
  return identity;
}
