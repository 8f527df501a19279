// Kubernetes metadata: a node-scoped pod watch (fieldSelector spec.nodeName=<node>) through
// @kubernetes/client-node's ListWatch (list, then watch from the list's resourceVersion,
// relist on expiry). Each pod becomes one record per container: pod name, namespace, uid,
// labels, owning workload (looked up: kubernetes-owners.ts), per-container requests and
// limits, and the container id from status.containerStatuses[].containerID with its runtime
// scheme stripped. The registry joins these with the cgroup resolver by container id (the
// cgroup path names the same id).
//
// Watches ask for bookmarks and end after a timeout of their own (5-10 min, as client-go's
// reflector): the next watch resumes from the last bookmark's resourceVersion, so a quiet
// node's watch never falls behind the server's history and never has to relist.
import { hostname } from 'node:os';
import { CoreV1Api, KubeConfig, ListWatch, type V1Pod, Watch } from '@kubernetes/client-node';
import { createLogger } from '../../../../common/log.js';
import type { ContainerRuntime } from '../cgroup-path.js';
import type { ContainerRecord, ContainerState, MetadataProvider } from '../types.js';
import { rfc3339ToNs, wallNs } from '../types.js';
import { createOwnerResolver, type Workload } from './kubernetes-owners.js';

const log = createLogger('collector.containers.kubernetes');

/** The one collection the provider reads: every pod, narrowed to this node by a field selector. */
const PODS_PATH = '/api/v1/pods';

/**
 * Every Kubernetes API request the provider makes and the RBAC rule it needs. The collector's
 * ClusterRole (deploy/helm/ktrail, rendered to deploy/k8s/rbac.yaml) grants exactly these;
 * test/integration/k8s-provider.test.ts checks both against a real API server's audit log.
 */
export const KUBERNETES_API_ACCESS = [
  {
    apiGroup: '',
    resource: 'pods',
    verb: 'list',
    request: `GET ${PODS_PATH}?fieldSelector=spec.nodeName=<node>`,
    why: "this node's pods at start, and again when a watch's resourceVersion expired",
  },
  {
    apiGroup: '',
    resource: 'pods',
    verb: 'watch',
    request: `GET ${PODS_PATH}?watch=true&allowWatchBookmarks=true&fieldSelector=spec.nodeName=<node>`,
    why: "changes to this node's pods from the list's resourceVersion on",
  },
  {
    apiGroup: 'apps',
    resource: 'replicasets',
    verb: 'get',
    request: 'GET /apis/apps/v1/namespaces/<ns>/replicasets/<name>',
    why: "the controller of a pod's ReplicaSet (a Deployment, or none)",
  },
  {
    apiGroup: 'batch',
    resource: 'jobs',
    verb: 'get',
    request: 'GET /apis/batch/v1/namespaces/<ns>/jobs/<name>',
    why: "the controller of a pod's Job (a CronJob, or none)",
  },
] as const;

export type KubernetesProviderOptions = {
  /** The node whose pods to watch (spec.nodeName); default: $NODE_NAME, else the hostname. */
  node?: string;
  /** Default: in-cluster config when running in a pod, else $KUBECONFIG / ~/.kube/config. */
  kubeConfig?: KubeConfig;
  /** First retry delay after the watch failed (default 500 ms); doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  /** Longest retry delay (default 5 s); every delay is jittered down by up to half. */
  maxBackoffMs?: number;
  /** Each watch ends after a random [t, 2t) seconds (default 300) and resumes from its last bookmark. */
  watchTimeoutSeconds?: number;
};

const RUNTIME_BY_SCHEME: Record<string, ContainerRuntime> = {
  containerd: 'containerd',
  'cri-o': 'cri-o',
  docker: 'docker',
};

/** "containerd://<id>" -> { runtime, id }. */
export function splitContainerId(
  value: string | undefined,
): { runtime: ContainerRuntime; id: string } | undefined {
  if (!value) return undefined;
  const m = /^([a-z0-9-]+):\/\/([0-9a-f]+)$/.exec(value);
  if (!m) return undefined;
  return { runtime: RUNTIME_BY_SCHEME[m[1]!] ?? 'unknown', id: m[2]! };
}

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes resource.Quantity ("250m", "1.5", "128Mi", "1e3") as a number of units. */
export function parseQuantity(q: string | undefined): number | undefined {
  if (q === undefined) return undefined;
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$/.exec(q.trim());
  if (!m) return undefined;
  return Number(m[1]) * SUFFIX[m[2] ?? '']!;
}

const cpuMillis = (q: string | undefined) => {
  const v = parseQuantity(q);
  return v === undefined ? undefined : BigInt(Math.ceil(Math.round(v * 1e6) / 1e3)); // k8s rounds up to 1m
};
const bytes = (q: string | undefined) => {
  const v = parseQuantity(q);
  return v === undefined ? undefined : BigInt(Math.ceil(v));
};

/** Times come as Date from the typed list call and as RFC 3339 strings from raw watch events. */
function timeNs(value: Date | string | undefined): bigint | undefined {
  if (value instanceof Date)
    return Number.isNaN(value.getTime()) ? undefined : BigInt(value.getTime()) * 1_000_000n;
  return rfc3339ToNs(value);
}

/** One record per container of the pod (current and, for restarts, the previous instance). */
function podToRecords(
  pod: V1Pod,
  node: string,
  workload: Workload | undefined,
  deleted: boolean,
): ContainerRecord[] {
  const meta = pod.metadata ?? {};
  const specs = new Map(
    [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].map((c) => [c.name, c] as const),
  );
  const statuses = [
    ...(pod.status?.containerStatuses ?? []),
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.ephemeralContainerStatuses ?? []),
  ];
  const records: ContainerRecord[] = [];
  const now = wallNs();
  const base = (name: string) => {
    const r: Omit<ContainerRecord, 'cgroupId' | 'runtime' | 'containerId' | 'state' | 'image'> = {
      node,
      cgroupPath: '',
      name,
      labels: { ...(meta.labels ?? {}) },
      updatedAtNs: now,
    };
    if (meta.uid !== undefined) r.podUid = meta.uid;
    if (meta.name !== undefined) r.podName = meta.name;
    if (meta.namespace !== undefined) r.namespace = meta.namespace;
    if (workload) {
      r.workloadKind = workload.kind;
      r.workloadName = workload.name;
    }
    const res = specs.get(name)?.resources;
    const set = (key: keyof ContainerRecord, v: bigint | undefined) => {
      if (v !== undefined) (r as Record<string, unknown>)[key] = v;
    };
    set('cpuRequestMillis', cpuMillis(res?.requests?.cpu));
    set('cpuLimitMillis', cpuMillis(res?.limits?.cpu));
    set('memoryRequestBytes', bytes(res?.requests?.memory));
    set('memoryLimitBytes', bytes(res?.limits?.memory));
    return r;
  };
  for (const st of statuses) {
    const current = splitContainerId(st.containerID);
    const previous = splitContainerId(st.lastState?.terminated?.containerID);
    // Waiting to restart (CrashLoopBackOff): containerID still names the instance that
    // died, and lastState.terminated describes it (stopped, with its times).
    const restarting =
      current !== undefined &&
      previous?.id === current.id &&
      st.state?.running === undefined &&
      st.state?.terminated === undefined;
    if (current && !restarting) {
      let state: ContainerState = st.state?.running
        ? 'RUNNING'
        : st.state?.terminated
          ? 'STOPPED'
          : 'CREATED';
      if (deleted) state = 'REMOVED';
      const r: ContainerRecord = {
        ...base(st.name),
        cgroupId: 0n,
        runtime: current.runtime,
        containerId: current.id,
        image: st.image,
        imageId: st.imageID,
        state,
      };
      const started = timeNs(st.state?.running?.startedAt ?? st.state?.terminated?.startedAt);
      const finished = timeNs(st.state?.terminated?.finishedAt);
      if (started !== undefined) r.startedAtNs = started;
      if (finished !== undefined) r.stoppedAtNs = finished;
      if (deleted) r.stoppedAtNs ??= now;
      records.push(r);
    }
    // The instance before the last restart: its cgroup may still be in flight downstream.
    if (previous && (restarting || previous.id !== current?.id)) {
      const r: ContainerRecord = {
        ...base(st.name),
        cgroupId: 0n,
        runtime: previous.runtime,
        containerId: previous.id,
        image: st.image,
        imageId: st.imageID,
        state: deleted ? 'REMOVED' : 'STOPPED',
      };
      const started = timeNs(st.lastState?.terminated?.startedAt);
      const finished = timeNs(st.lastState?.terminated?.finishedAt);
      if (started !== undefined) r.startedAtNs = started;
      if (finished !== undefined) r.stoppedAtNs = finished;
      records.push(r);
    }
  }
  return records;
}

/**
 * client-node's Watch, asking for bookmarks and a server-side timeout, and telling `alive`
 * when the server accepted a watch and whenever anything (bookmarks too) arrives.
 */
class BookmarkWatch extends Watch {
  private readonly timeoutSeconds: () => number;
  private readonly alive: () => void;

  constructor(kc: KubeConfig, timeoutSeconds: () => number, alive: () => void) {
    super(kc);
    this.timeoutSeconds = timeoutSeconds;
    this.alive = alive;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    let failed = false;
    const controller = await super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: this.timeoutSeconds() },
      (phase, obj, raw) => {
        this.alive();
        callback(phase, obj, raw);
      },
      (err) => {
        if (err) failed = true;
        done(err);
      },
    );
    // Watch.watch returns once the response headers are in; an error status has called done.
    if (!failed) this.alive();
    return controller;
  }
}

export function createKubernetesProvider(options: KubernetesProviderOptions = {}): MetadataProvider & {
  /** The API server answered the last list or watch, and no error came since. */
  readonly connected: boolean;
  /** Watch restarts after errors (API server unreachable, 5xx, auth). */
  readonly restarts: number;
  /** Lists so far: 1 at start, one more for each expired resourceVersion (410 Gone). */
  readonly lists: number;
  /** The resourceVersion the next watch resumes from. */
  readonly resourceVersion: string;
  /** Owner lookups that failed (the pod was recorded with its direct owner). */
  readonly ownerLookupFailures: number;
} {
  const node = options.node ?? process.env.NODE_NAME ?? hostname();
  const minBackoff = options.minBackoffMs ?? 500;
  const maxBackoff = options.maxBackoffMs ?? 5_000;
  const watchTimeout = options.watchTimeoutSeconds ?? 300;
  const fieldSelector = `spec.nodeName=${node}`;
  let kc = options.kubeConfig;
  let informer: ListWatch<V1Pod> | undefined;
  let owners: ReturnType<typeof createOwnerResolver> | undefined;
  let stopped = false;
  let connected = false;
  let restarts = 0;
  let lists = 0;
  let backoff = minBackoff;
  let retryTimer: NodeJS.Timeout | undefined;
  // Pod events in arrival order: an owner lookup may wait on the API server.
  let queue: Promise<void> = Promise.resolve();

  // Healthy = a list, a watch or a watch event got through (ListWatch's 'connect' fires before it tries).
  const healthy = () => {
    connected = true;
    backoff = minBackoff;
  };

  return {
    get connected() {
      return connected;
    },
    get restarts() {
      return restarts;
    },
    get lists() {
      return lists;
    },
    get resourceVersion() {
      return informer?.latestResourceVersion() ?? '';
    },
    get ownerLookupFailures() {
      return owners?.failures ?? 0;
    },
    async start(onRecord) {
      stopped = false;
      if (!kc) {
        kc = new KubeConfig();
        kc.loadFromDefault();
      }
      const api = kc.makeApiClient(CoreV1Api);
      const resolver = createOwnerResolver(kc, log);
      owners = resolver;
      const emit = (pod: V1Pod, deleted: boolean) => {
        queue = queue
          .then(async () => {
            const workload = await resolver.workloadOf(pod);
            for (const r of podToRecords(pod, node, workload, deleted)) onRecord(r);
          })
          .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'pod event not recorded'));
      };
      // ListWatch: list (with our field selector), then watch from the list's resourceVersion;
      // a watch that outlived the server's history gets 410 Gone and ListWatch relists.
      informer = new ListWatch<V1Pod>(
        PODS_PATH,
        new BookmarkWatch(kc, () => Math.round(watchTimeout * (1 + Math.random())), healthy),
        async () => {
          lists++;
          const pods = await api.listPodForAllNamespaces({ fieldSelector });
          healthy();
          return pods;
        },
        false,
        undefined,
        fieldSelector,
      );
      informer.on('add', (pod) => emit(pod, false));
      informer.on('update', (pod) => emit(pod, false));
      informer.on('delete', (pod) => emit(pod, true));
      informer.on('error', (err) => {
        // ListWatch stops on errors (API server unreachable, auth, 5xx): start it again, with backoff.
        connected = false;
        if (stopped) return;
        // Jitter: after an API server restart, a fleet of collectors does not come back in step.
        const delay = Math.round(backoff * (0.5 + Math.random() / 2));
        log.warn(
          { err: (err as Error | undefined)?.message, retryInMs: delay },
          'pod watch failed; restarting',
        );
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          restarts++;
          informer?.start().catch((e) => log.warn({ err: (e as Error).message }, 'pod watch restart failed'));
        }, delay);
        retryTimer.unref();
        backoff = Math.min(backoff * 2, maxBackoff);
      });
      // Resolves after the first list (or its failure: then retries go on in the background,
      // so a collector starting before the API server is reachable still comes up).
      await informer.start();
      await queue;
      log.info({ node, connected, pods: informer.list().length }, 'kubernetes pod watch started');
    },
    async stop() {
      stopped = true;
      clearTimeout(retryTimer);
      await informer?.stop();
      await queue;
      connected = false;
    },
  };
}
