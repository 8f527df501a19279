// The workload that owns a pod, looked up from the API server rather than guessed from names:
// a pod's controller is often a ReplicaSet or a Job, whose own controller (a Deployment, a
// CronJob, or nothing for a stand-alone Job) is what people call the workload. A Job named
// `backup-20261205` may be a CronJob's or a person's; only its ownerReferences say which.
import {
  AppsV1Api,
  BatchV1Api,
  type KubeConfig,
  type V1OwnerReference,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../../../../common/log.js';

export type Workload = { kind: string; name: string };

/** The kinds whose owner is looked up (with the RBAC `get` each needs, KUBERNETES_API_ACCESS). */
export const LOOKED_UP_KINDS = ['ReplicaSet', 'Job'] as const;

export type OwnerResolver = {
  /** The pod's workload, or undefined for a bare pod. */
  workloadOf(pod: V1Pod): Promise<Workload | undefined>;
  /** Lookups that failed (not a 404): the pod was recorded with its direct owner. */
  readonly failures: number;
  readonly lookups: number;
};

type OwnedObject = { metadata?: { uid?: string; ownerReferences?: V1OwnerReference[] } };

const controllerRef = (refs: V1OwnerReference[] | undefined) => refs?.find((o) => o.controller) ?? refs?.[0];

const statusOf = (err: unknown): number | undefined => {
  const e = err as { code?: unknown; statusCode?: unknown };
  const code = typeof e.code === 'number' ? e.code : e.statusCode;
  return typeof code === 'number' ? code : undefined;
};

export function createOwnerResolver(
  kc: KubeConfig,
  log: Logger,
  options: { timeoutMs?: number; maxEntries?: number } = {},
): OwnerResolver {
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const timeoutMs = options.timeoutMs ?? 5_000;
  const maxEntries = options.maxEntries ?? 4096;
  // By the owner's uid: a ReplicaSet's or Job's owner never changes, and a new object with
  // the same name has a new uid. Least recently used entries go first.
  const cache = new Map<string, Workload>();
  let failures = 0;
  let lookups = 0;
  let lastWarning = '';

  const read = (kind: string, namespace: string, name: string): Promise<OwnedObject> =>
    kind === 'ReplicaSet'
      ? apps.readNamespacedReplicaSet({ name, namespace })
      : batch.readNamespacedJob({ name, namespace });

  async function lookUp(ref: V1OwnerReference, namespace: string): Promise<Workload> {
    const direct = { kind: ref.kind, name: ref.name };
    const hit = cache.get(ref.uid);
    if (hit) {
      cache.delete(ref.uid);
      cache.set(ref.uid, hit);
      return hit;
    }
    lookups++;
    let timer: NodeJS.Timeout | undefined;
    try {
      const obj = await Promise.race([
        read(ref.kind, namespace, ref.name),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      // Same name, other uid: the pod's owner is gone and a new one took its name.
      const owner = obj.metadata?.uid === ref.uid ? controllerRef(obj.metadata?.ownerReferences) : undefined;
      const workload = owner ? { kind: owner.kind, name: owner.name } : direct;
      remember(ref.uid, workload);
      return workload;
    } catch (err) {
      if (statusOf(err) === 404) {
        // Deleted (the pod is an orphan on its way out): its direct owner is all there is.
        remember(ref.uid, direct);
        return direct;
      }
      failures++;
      const message = `${ref.kind} ${namespace}/${ref.name}: ${(err as Error).message}`;
      if (message !== lastWarning)
        log.warn({ err: message }, 'owner lookup failed; recording the direct owner');
      lastWarning = message;
      return direct;
    } finally {
      clearTimeout(timer);
    }
  }

  function remember(uid: string, workload: Workload): void {
    cache.set(uid, workload);
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value as string);
  }

  return {
    async workloadOf(pod) {
      const ref = controllerRef(pod.metadata?.ownerReferences);
      if (!ref) return undefined;
      if (!(LOOKED_UP_KINDS as readonly string[]).includes(ref.kind) || !ref.uid)
        return { kind: ref.kind, name: ref.name };
      return await lookUp(ref, pod.metadata?.namespace ?? 'default');
    },
    get failures() {
      return failures;
    },
    get lookups() {
      return lookups;
    },
  };
}
