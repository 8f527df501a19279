// The collector's Kubernetes provider against a real kube-apiserver (deploy/local/kube.sh,
// test/support/kube-apiserver.ts), with the collector's own RBAC (deploy/k8s/rbac.yaml) and a
// service-account token handed over the way a pod gets one. There is no kubelet: the test
// binds pods to nodes itself (spec.nodeName) and writes their status as a kubelet would.
import { readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject } from 'vitest';
import {
  createKubernetesProvider,
  KUBERNETES_API_ACCESS,
} from '../../collector/src/containers/providers/kubernetes.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { type ControlPlane, startControlPlane } from '../support/kube-apiserver.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const kube = endpointOrReason(inject('kube'));
const it = itReal(kube.missing);
const deploy = (f: string) => new URL(`../../deploy/k8s/${f}`, import.meta.url).pathname;
const NODE = 'worker-1';
const OTHER = 'worker-2';
const NS = 'shop';
const COLLECTOR = 'system:serviceaccount:ktrail:ktrail-collector';
const today = new Date().toISOString().slice(0, 10).replaceAll('-', '');

let cp: ControlPlane;
let collectorConfig: KubeConfig;
const stops: (() => Promise<void>)[] = [];
/** From each API server start to its /readyz (ms). */
const restarts: [number, number][] = [];

async function startApiServer(): Promise<void> {
  const from = Date.now();
  await cp.startApiServer();
  restarts.push([from, Date.now()]);
}

/** An object created with kubectl; returns its uid. */
async function create(obj: Record<string, unknown>): Promise<string> {
  const out = await cp.kubectl(['create', '-o', 'jsonpath={.metadata.uid}', '-f', '-'], JSON.stringify(obj));
  return out.trim();
}

const owner = (apiVersion: string, kind: string, name: string, uid: string) => ({
  apiVersion,
  kind,
  name,
  uid,
  controller: true,
});

const containers = [{ name: 'c', image: 'busybox' }];
const template = { spec: { restartPolicy: 'Never', containers } };
const podTemplate = (app: string) => ({ metadata: { labels: { app } }, spec: { containers } });

/** A pod bound to `node` (no scheduler here), with requests and limits. */
async function pod(name: string, node: string, ownerRef?: ReturnType<typeof owner>, labels = {}) {
  return await create({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels, ...(ownerRef ? { ownerReferences: [ownerRef] } : {}) },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          resources: { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: '1', memory: '256Mi' } },
        },
      ],
    },
  });
}

const containerId = (name: string, n = 0) =>
  Buffer.from(`${name}-${n}`).toString('hex').padEnd(64, '0').slice(0, 64);

/** What the kubelet would write: the container running (or terminated) under its runtime id. */
async function setStatus(name: string, state: 'running' | 'terminated', n = 0): Promise<void> {
  const startedAt = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const finishedAt = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const status = {
    phase: state === 'running' ? 'Running' : 'Failed',
    containerStatuses: [
      {
        name: 'app',
        image: 'registry.example/app:1',
        imageID: 'registry.example/app@sha256:' + '1'.repeat(64),
        containerID: `containerd://${containerId(name, n)}`,
        ready: state === 'running',
        restartCount: n,
        state:
          state === 'running'
            ? { running: { startedAt } }
            : { terminated: { exitCode: 1, reason: 'Error', startedAt, finishedAt } },
      },
    ],
  };
  await cp.kubectl([
    '-n',
    NS,
    'patch',
    'pod',
    name,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status }),
  ]);
}

const forceDelete = (name: string) =>
  cp.kubectl(['-n', NS, 'delete', 'pod', name, '--grace-period=0', '--force', '--wait=false']);

function watchProvider(options: { node?: string; watchTimeoutSeconds?: number } = {}) {
  const records: ContainerRecord[] = [];
  const provider = createKubernetesProvider({ node: NODE, kubeConfig: collectorConfig, ...options });
  stops.push(() => provider.stop());
  const last = (podName: string) => records.filter((r) => r.podName === podName).at(-1);
  return { provider, records, last, start: () => provider.start((r) => records.push(r)) };
}

beforeAll(async () => {
  if (!kube.value) return;
  cp = await startControlPlane(kube.value);
  await cp.kubectl(['apply', '-f', deploy('namespace.yaml'), '-f', deploy('rbac.yaml')]);
  await cp.namespace(NS);
  collectorConfig = await cp.inCluster('ktrail', 'ktrail-collector');
}, 180_000);

afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

afterAll(async () => {
  await cp?.close();
});

describe('kubernetes provider against a real kube-apiserver', () => {
  it('sees its node pods created, updated and deleted, with owners looked up, labels, requests and limits', async () => {
    const deployment = await create({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: podTemplate('web'),
      },
    });
    const rs = await create({
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: 'web-5d8f9c7b6',
        namespace: NS,
        ownerReferences: [owner('apps/v1', 'Deployment', 'web', deployment)],
      },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: podTemplate('web'),
      },
    });
    // A ReplicaSet named like a Deployment's, owned by none.
    const bareRs = await create({
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: { name: 'cache-6c4d8b9f7', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'cache' } },
        template: podTemplate('cache'),
      },
    });
    const cron = await create({
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'report', namespace: NS },
      spec: { schedule: '0 * * * *', jobTemplate: { spec: { template } } },
    });
    const job = await create({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: 'report-29402880',
        namespace: NS,
        ownerReferences: [owner('batch/v1', 'CronJob', 'report', cron)],
      },
      spec: { template },
    });
    // A stand-alone Job named like a CronJob's.
    const backup = await create({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: `backup-${today}`, namespace: NS },
      spec: { template },
    });
    await pod('web-5d8f9c7b6-a1b2c', NODE, owner('apps/v1', 'ReplicaSet', 'web-5d8f9c7b6', rs), {
      app: 'web',
      tier: 'front',
    });
    await pod('web-5d8f9c7b6-z9y8x', OTHER, owner('apps/v1', 'ReplicaSet', 'web-5d8f9c7b6', rs), {
      app: 'web',
    });
    await pod('cache-6c4d8b9f7-q1w2e', NODE, owner('apps/v1', 'ReplicaSet', 'cache-6c4d8b9f7', bareRs));
    await pod('report-29402880-k3j4h', NODE, owner('batch/v1', 'Job', 'report-29402880', job));
    await pod(`backup-${today}-m5n6b`, NODE, owner('batch/v1', 'Job', `backup-${today}`, backup));
    await pod('debug', NODE);

    const w = watchProvider();
    await w.start();
    expect(w.provider.connected).toBe(true);
    // Pending pods have no containers yet: nothing to record until the "kubelet" reports them.
    expect(w.records).toEqual([]);
    for (const name of [
      'web-5d8f9c7b6-a1b2c',
      'web-5d8f9c7b6-z9y8x',
      'cache-6c4d8b9f7-q1w2e',
      'report-29402880-k3j4h',
      `backup-${today}-m5n6b`,
      'debug',
    ])
      await setStatus(name, 'running');

    const web = await waitFor('web pod RUNNING', () => w.last('web-5d8f9c7b6-a1b2c'));
    expect(web).toMatchObject({
      node: NODE,
      namespace: NS,
      name: 'app',
      runtime: 'containerd',
      containerId: containerId('web-5d8f9c7b6-a1b2c'),
      state: 'RUNNING',
      workloadKind: 'Deployment',
      workloadName: 'web',
      cpuRequestMillis: 250n,
      cpuLimitMillis: 1000n,
      memoryRequestBytes: 128n * 1024n ** 2n,
      memoryLimitBytes: 256n * 1024n ** 2n,
      labels: { app: 'web', tier: 'front' },
    });
    await waitFor('debug pod', () => w.last('debug'));
    expect(w.last('cache-6c4d8b9f7-q1w2e')).toMatchObject({
      workloadKind: 'ReplicaSet',
      workloadName: 'cache-6c4d8b9f7',
    });
    expect(w.last('report-29402880-k3j4h')).toMatchObject({
      workloadKind: 'CronJob',
      workloadName: 'report',
    });
    expect(w.last(`backup-${today}-m5n6b`)).toMatchObject({
      workloadKind: 'Job',
      workloadName: `backup-${today}`,
    });
    expect(w.last('debug')?.workloadKind).toBeUndefined();
    expect(w.records.filter((r) => r.podName === 'web-5d8f9c7b6-z9y8x')).toEqual([]); // another node's

    // Updated: a label, then the container exits; deleted: REMOVED.
    await cp.kubectl(['-n', NS, 'label', 'pod', 'web-5d8f9c7b6-a1b2c', 'tier=back', '--overwrite']);
    await waitFor('label update', () =>
      w.last('web-5d8f9c7b6-a1b2c')?.labels.tier === 'back' ? true : undefined,
    );
    await setStatus(`backup-${today}-m5n6b`, 'terminated');
    await waitFor('backup STOPPED', () =>
      w.last(`backup-${today}-m5n6b`)?.state === 'STOPPED' ? true : undefined,
    );
    await forceDelete(`backup-${today}-m5n6b`);
    const removed = await waitFor('backup REMOVED', () => {
      const r = w.last(`backup-${today}-m5n6b`);
      return r?.state === 'REMOVED' ? r : undefined;
    });
    expect(removed).toMatchObject({ workloadKind: 'Job', containerId: containerId(`backup-${today}-m5n6b`) });
    expect(w.provider.ownerLookupFailures).toBe(0);
    expect(w.provider.lists).toBe(1);
  });

  it('API server restarted mid-watch: reconnects within the backoff cap, misses nothing', async () => {
    const w = watchProvider();
    await w.start();
    await waitFor('web pod listed', () => w.last('web-5d8f9c7b6-a1b2c'));
    await cp.stopApiServer();
    await waitFor('disconnect noticed', () => (w.provider.connected ? undefined : true), 30_000);
    // Down long enough for the old doubling delay to pass 8 s.
    await new Promise((r) => setTimeout(r, 12_000));
    await startApiServer();
    const up = Date.now();
    // Changes right after the restart, while the provider may still be waiting to retry.
    await pod('late-1', NODE, undefined, { wave: 'late' });
    await setStatus('late-1', 'running');
    await forceDelete('cache-6c4d8b9f7-q1w2e');
    await cp.kubectl(['-n', NS, 'label', 'pod', 'debug', 'after=restart']);
    await waitFor('connected again', () => (w.provider.connected ? true : undefined), 15_000, 50);
    const reconnectMs = Date.now() - up;
    expect(reconnectMs).toBeLessThan(5_000 + 2_000);
    await waitFor('late pod', () => (w.last('late-1')?.state === 'RUNNING' ? true : undefined));
    await waitFor('deleted pod', () =>
      w.last('cache-6c4d8b9f7-q1w2e')?.state === 'REMOVED' ? true : undefined,
    );
    await waitFor('relabelled pod', () => (w.last('debug')?.labels.after === 'restart' ? true : undefined));
    expect(w.provider.restarts).toBeGreaterThanOrEqual(1);
    console.log(
      `[k8s] reconnected ${reconnectMs} ms after the API server was ready; lists ${w.provider.lists}, restarts ${w.provider.restarts}`,
    );
  });

  it('a watch whose resourceVersion expired (410 Gone) relists, and a pod deleted meanwhile turns REMOVED', async () => {
    const w = watchProvider();
    await w.start();
    await waitFor('late pod listed', () => w.last('late-1'));
    const old = w.provider.resourceVersion;
    // History moves on without this node's pods; the restarted watch cache starts after `old`.
    await cp.kubectl(['-n', NS, 'create', 'configmap', 'bump', '--from-literal=a=1']);
    await cp.stopApiServer();
    await startApiServer();
    await forceDelete('late-1');
    // The API server itself says 410 to a watch from `old`.
    const answer = await cp.kubectl([
      'get',
      '--raw',
      `/api/v1/pods?watch=true&resourceVersion=${old}&timeoutSeconds=1`,
    ]);
    expect(answer).toMatch(/"code":410/);
    await waitFor('relist', () => (w.provider.lists >= 2 ? true : undefined), 20_000);
    await waitFor('late pod REMOVED', () => (w.last('late-1')?.state === 'REMOVED' ? true : undefined));
    expect(w.provider.connected).toBe(true);
  });

  it('a quiet node keeps its resourceVersion current through bookmarks: no relist after watch timeouts', async () => {
    const w = watchProvider({ node: 'quiet-node', watchTimeoutSeconds: 3 });
    await w.start();
    const first = Number(w.provider.resourceVersion);
    // Changes elsewhere move the server's history on; this node has no pods at all.
    for (let i = 0; i < 3; i++) await pod(`elsewhere-${i}`, OTHER);
    await waitFor(
      'a bookmark past the changes',
      () => (Number(w.provider.resourceVersion) > first ? true : undefined),
      20_000,
      100,
    );
    // Several watch timeouts (3-6 s each) later: still the one list.
    await new Promise((r) => setTimeout(r, 12_000));
    expect(w.provider.lists).toBe(1);
    expect(w.records).toEqual([]);
    const watches = auditEvents().filter((e) => e.verb === 'watch' && e.requestURI.includes('quiet-node'));
    expect(watches.length).toBeGreaterThanOrEqual(3);
    for (const e of watches) expect(e.requestURI).toContain('allowWatchBookmarks=true');
  });

  it('the collector makes exactly the API requests its RBAC grants, each succeeding; can-i agrees', async () => {
    const rule = (e: AuditEvent) => `${e.objectRef?.apiGroup ?? ''}/${e.objectRef?.resource}:${e.verb}`;
    const used = new Set(auditEvents().map(rule));
    const declared = new Set(KUBERNETES_API_ACCESS.map((a) => `${a.apiGroup}/${a.resource}:${a.verb}`));
    expect([...used].sort()).toEqual([...declared].sort());
    // Each of them succeeded. The only refusals come in the seconds after an API server restart,
    // while its RBAC authorizer has not loaded the roles and bindings yet (it answers first).
    for (const access of declared)
      expect(
        auditEvents().some((e) => rule(e) === access && (e.responseStatus?.code ?? 0) < 300),
        `${access} succeeded`,
      ).toBe(true);
    for (const e of auditEvents().filter((x) => x.responseStatus?.code === 403)) {
      const at = Date.parse(e.requestReceivedTimestamp);
      const afterRestart = restarts.some(([from, ready]) => at >= from && at <= ready + 10_000);
      expect(afterRestart, `refused at ${e.requestReceivedTimestamp}`).toBe(true);
    }
    const canI = async (verb: string, resource: string) =>
      (await cp.kubectlRun(['auth', 'can-i', verb, resource, '--as', COLLECTOR, '-A'])).stdout.trim();
    for (const a of KUBERNETES_API_ACCESS)
      expect(
        await canI(a.verb, a.apiGroup ? `${a.resource}.${a.apiGroup}` : a.resource),
        `${a.verb} ${a.resource}`,
      ).toBe('yes');
    for (const [verb, resource] of [
      ['get', 'pods'],
      ['delete', 'pods'],
      ['list', 'replicasets.apps'],
      ['watch', 'jobs.batch'],
      ['get', 'secrets'],
      ['get', 'deployments.apps'],
    ] as const)
      expect(await canI(verb, resource), `${verb} ${resource}`).toBe('no');
  });
});

type AuditEvent = {
  auditID: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { apiGroup?: string; resource?: string };
  requestReceivedTimestamp: string;
  responseStatus?: { code?: number };
};

/** The collector's requests as the API server's audit log recorded them (a watch logs two stages). */
function auditEvents(): AuditEvent[] {
  const byId = new Map<string, AuditEvent>();
  for (const line of readFileSync(cp.auditLog, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const e = JSON.parse(line) as AuditEvent;
    if (e.user.username === COLLECTOR) byId.set(e.auditID, e);
  }
  return [...byId.values()];
}
