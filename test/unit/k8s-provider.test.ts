// The Kubernetes pod-watch provider's own logic against a RECORDED watch stream: a tiny local
// HTTP server (test/support/recorded-k8s.ts) replays test/fixtures/k8s/ (a PodList, then
// watch events as chunked JSON lines, the real watch protocol; owners.json answers the owner
// lookups) and the real @kubernetes/client-node ListWatch talks to it. The same provider
// against a real kube-apiserver: test/integration/k8s-provider.test.ts. The fixtures are authored from the Kubernetes
// API shapes (Pod v1): a Deployment pod with an init container and a sidecar whose app
// container is OOM-killed and restarted, a StatefulSet pod, a DaemonSet pod on CRI-O, a
// CronJob pod that goes Pending -> Running -> Succeeded -> deleted, a bookmark, a bare pod;
// and (watch-crashloop.jsonl) a Deployment pod whose container fails 4 times, with the
// kubelet's CrashLoopBackOff back-offs of 10, 20, 40 and 80 s between restarts.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry } from '../../collector/src/containers/index.js';
import {
  createKubernetesProvider,
  parseQuantity,
  splitContainerId,
} from '../../collector/src/containers/providers/kubernetes.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { type RecordedApi, type RecordedPods, serveRecordedPods } from '../support/recorded-k8s.js';
import { waitFor } from '../support/wait.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/k8s/${name}`, import.meta.url), 'utf8');
const list = JSON.parse(fixture('list-pods.json')) as {
  metadata: { resourceVersion: string };
  items: { metadata: { name: string; uid: string }; spec: { nodeName: string } }[];
};
const watchLines = fixture('watch-pods.jsonl').trim().split('\n');
const NODE = list.items[0]!.spec.nodeName;

const owners = (JSON.parse(fixture('owners.json')) as { items: NonNullable<RecordedPods['owners']> }).items;
const open: (() => void)[] = [];

/** The recorded list and watch stream (and the pods' owners), served as the API server does. */
async function apiServer(
  options: { port?: number; podList?: RecordedPods['podList']; stream?: string[] } = {},
): Promise<RecordedApi> {
  const api = await serveRecordedPods({
    podList: options.podList ?? list,
    stream: options.stream ?? watchLines,
    owners,
    ...(options.port === undefined ? {} : { port: options.port }),
  });
  open.push(() => api.close());
  return api;
}

/** Container ids as the fixture states them (containerID minus its scheme). */
function idOf(podName: string, container: string, where: 'list' | 'watch' = 'list'): string {
  const pods =
    where === 'list'
      ? list.items
      : watchLines.map((l) => (JSON.parse(l) as { object: (typeof list.items)[number] }).object);
  for (const pod of pods) {
    if (pod.metadata.name !== podName) continue;
    const st = [
      ...((pod as { status?: { containerStatuses?: { name: string; containerID?: string }[] } }).status
        ?.containerStatuses ?? []),
    ].find((s) => s.name === container && s.containerID);
    if (st?.containerID) return splitContainerId(st.containerID)!.id;
  }
  throw new Error(`no container ${container} in ${podName}`);
}

afterEach(() => {
  for (const close of open.splice(0)) close();
});

describe('kubernetes provider on a recorded watch stream', () => {
  it('lists and watches only this node, and turns pods into per-container records', async () => {
    const api = await apiServer();
    const records: ContainerRecord[] = [];
    const provider = createKubernetesProvider({ node: NODE, kubeConfig: api.kubeConfig });
    await provider.start((r) => records.push(r));
    open.push(() => void provider.stop());

    // The node-scoped selector on both the list and the watch, and the watch resumes at the list's version.
    const watchReq = await waitFor('watch request', () =>
      api.requests.find((u) => u.searchParams.get('watch')),
    );
    expect(api.requests[0]!.searchParams.get('fieldSelector')).toBe(`spec.nodeName=${NODE}`);
    expect(watchReq.searchParams.get('fieldSelector')).toBe(`spec.nodeName=${NODE}`);
    expect(watchReq.searchParams.get('resourceVersion')).toBe(list.metadata.resourceVersion);

    const webApp = records.find((r) => r.containerId === idOf('web-7d4b9c8f6d-x2k9p', 'app'));
    expect(webApp).toMatchObject({
      node: NODE,
      runtime: 'containerd',
      name: 'app',
      podName: 'web-7d4b9c8f6d-x2k9p',
      namespace: 'shop',
      podUid: list.items[0]!.metadata.uid,
      workloadKind: 'Deployment',
      workloadName: 'web',
      cpuRequestMillis: 250n,
      cpuLimitMillis: 1000n,
      memoryRequestBytes: 128n * 1024n * 1024n,
      memoryLimitBytes: 256n * 1024n * 1024n,
      state: 'RUNNING',
      cgroupId: 0n, // the registry joins it with the resolver
    });
    expect(webApp?.labels).toMatchObject({ app: 'web', tier: 'frontend' });
    expect(webApp?.startedAtNs).toBe(BigInt(Date.parse('2026-11-25T18:00:03Z')) * 1_000_000n);
    // sidecar without limits, init container that already completed
    const envoy = records.find((r) => r.name === 'envoy');
    expect(envoy?.cpuRequestMillis).toBe(100n);
    expect(envoy?.cpuLimitMillis).toBeUndefined();
    const init = records.find((r) => r.name === 'migrate');
    expect(init).toMatchObject({ state: 'STOPPED', workloadKind: 'Deployment', cpuRequestMillis: 50n });
    expect(init!.stoppedAtNs! - init!.startedAtNs!).toBe(1_000_000_000n);

    expect(records.find((r) => r.podName === 'db-0')).toMatchObject({
      workloadKind: 'StatefulSet',
      workloadName: 'db',
      cpuRequestMillis: 2000n,
      memoryLimitBytes: 4n * 1024n ** 3n,
    });
    expect(records.find((r) => r.podName === 'node-exporter-q7z4m')).toMatchObject({
      runtime: 'cri-o',
      workloadKind: 'DaemonSet',
      workloadName: 'node-exporter',
      namespace: 'monitoring',
    });

    // Watch events: restart, cronjob pod lifecycle, bare pod.
    const bare = await waitFor('bare pod', () => records.find((r) => r.podName === 'debug-shell'));
    expect(bare).toMatchObject({ runtime: 'docker', cpuRequestMillis: 100n, memoryRequestBytes: 1_000_000n });
    expect(bare.workloadKind).toBeUndefined();

    const restarted = records.find((r) => r.containerId === idOf('web-7d4b9c8f6d-x2k9p', 'app', 'watch'));
    expect(restarted?.state).toBe('RUNNING');
    const oomKilled = records.filter((r) => r.containerId === webApp!.containerId).at(-1);
    expect(oomKilled?.state).toBe('STOPPED');
    expect(oomKilled?.stoppedAtNs).toBe(BigInt(Date.parse('2026-11-25T19:12:40Z')) * 1_000_000n);

    const report = records.filter((r) => r.podName === 'report-29402880-zx8vq');
    expect(report.map((r) => r.state)).toEqual(['RUNNING', 'STOPPED', 'REMOVED']); // Pending had no container
    expect(report[0]).toMatchObject({
      workloadKind: 'CronJob',
      workloadName: 'report',
      memoryRequestBytes: 512_000_000n,
    });
    expect(report[0]!.startedAtNs).toBe(
      BigInt(Date.parse('2026-11-25T20:00:02Z')) * 1_000_000n + 123_456_789n,
    );
    expect(report[1]!.stoppedAtNs).toBe(
      BigInt(Date.parse('2026-11-25T20:00:09Z')) * 1_000_000n + 500_000_000n,
    );
    expect(provider.connected).toBe(true);
  });

  it('joins pod records with cgroups by container id (systemd kubepods slices)', async () => {
    const api = await apiServer();
    const root = mkdtempSync(join(tmpdir(), 'ktrail-k8s-cgroup-'));
    open.push(() => rmSync(root, { recursive: true, force: true }));
    const web = list.items[0]!;
    const podSlice = `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${web.metadata.uid.replaceAll('-', '_')}.slice`;
    const appPath = `${podSlice}/cri-containerd-${idOf(web.metadata.name, 'app')}.scope`;
    mkdirSync(join(root, appPath), { recursive: true });
    const resolver = await CgroupResolver.create({ mountPoint: root });
    const records: ContainerRecord[] = [];
    const registry = new ContainerRegistry({
      node: NODE,
      resolver,
      providers: [createKubernetesProvider({ node: NODE, kubeConfig: api.kubeConfig })],
      onRecord: (r) => records.push(r),
      bootToWallNs: (ns) => ns,
    });
    await registry.start();
    open.push(() => void registry.stop());

    const inode = statSync(join(root, appPath), { bigint: true }).ino;
    const joined = await waitFor('joined record', () =>
      records.find((r) => r.cgroupId === inode && r.podName === web.metadata.name),
    );
    expect(joined).toMatchObject({
      cgroupPath: '/' + appPath,
      name: 'app',
      workloadName: 'web',
      runtime: 'containerd',
    });
    expect(joined.podUid).toBe(web.metadata.uid);
    expect(registry.lookup(inode)?.cpuLimitMillis).toBe(1000n);
    // The kernel removes the OOM-killed container's cgroup; the record turns REMOVED and keeps its pod.
    resolver.apply({ kind: 'cgroup_rmdir', cgroupId: inode, path: '/' + appPath, tsNs: 42n });
    expect(registry.lookup(inode)).toMatchObject({ state: 'REMOVED', podName: web.metadata.name });
  });

  it('API server gone and back: the watch restarts with backoff and relists (a pod deleted meanwhile -> REMOVED)', async () => {
    const first = await apiServer({ stream: [] });
    const records: ContainerRecord[] = [];
    const provider = createKubernetesProvider({
      node: NODE,
      kubeConfig: first.kubeConfig,
      minBackoffMs: 100,
      maxBackoffMs: 400,
    });
    await provider.start((r) => records.push(r));
    open.push(() => void provider.stop());
    await waitFor('watching', () => first.requests.find((u) => u.searchParams.get('watch')));
    const dbId = idOf('db-0', 'postgres');
    expect(records.find((r) => r.containerId === dbId)?.state).toBe('RUNNING');

    first.close();
    await waitFor('disconnect noticed', () => (provider.connected ? undefined : true));
    await new Promise((r) => setTimeout(r, 500)); // retries against a closed port

    // While it was away, db-0 was deleted: the relist says so.
    const without = {
      ...list,
      metadata: { resourceVersion: '2000' },
      items: list.items.filter((p) => p.metadata.name !== 'db-0'),
    };
    const second = await apiServer({ port: Number(new URL(first.url).port), podList: without, stream: [] });
    const removed = await waitFor('REMOVED after relist', () =>
      records.find((r) => r.containerId === dbId && r.state === 'REMOVED'),
    );
    expect(removed.podName).toBe('db-0');
    expect(provider.restarts).toBeGreaterThanOrEqual(1);
    await waitFor('reconnected', () => (provider.connected ? true : undefined));
    expect(second.requests.some((u) => u.searchParams.get('watch') === 'true')).toBe(true);
  });

  it('a crash-looping container: each dead instance STOPPED with its times, never CREATED', async () => {
    const stream = fixture('watch-crashloop.jsonl').trim().split('\n');
    const api = await apiServer({
      podList: { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '4000' }, items: [] },
      stream,
    });
    const records: ContainerRecord[] = [];
    const provider = createKubernetesProvider({ node: 'worker-2', kubeConfig: api.kubeConfig });
    await provider.start((r) => records.push(r));
    open.push(() => void provider.stop());
    // The last event names the fifth instance (RUNNING), then the fourth (its lastState).
    const ids = await waitFor('the whole stream', () => {
      const seen = [...new Set(records.map((r) => r.containerId))];
      return seen.length === 5 && records.at(-1)?.containerId === seen[3] ? seen : undefined;
    });
    expect(ids).toHaveLength(5);
    expect(records.filter((r) => r.state === 'CREATED')).toEqual([]);
    const last = ids.map((id) => records.filter((r) => r.containerId === id).at(-1) as ContainerRecord);
    expect(last.map((r) => r.state)).toEqual(['STOPPED', 'STOPPED', 'STOPPED', 'STOPPED', 'RUNNING']);
    for (const r of last.slice(0, 4)) expect(r.stoppedAtNs! - r.startedAtNs!).toBe(2_000_000_000n);
    expect(new Set(records.map((r) => `${r.namespace}/${r.podUid}/${r.name}`)).size).toBe(1);
  });

  it('asks for bookmarks and a watch timeout, and is connected again after a resumed watch with no events', async () => {
    const first = await apiServer({ stream: [] });
    const provider = createKubernetesProvider({
      node: NODE,
      kubeConfig: first.kubeConfig,
      minBackoffMs: 50,
      maxBackoffMs: 100,
      watchTimeoutSeconds: 60,
    });
    await provider.start(() => {});
    open.push(() => void provider.stop());
    const watch = await waitFor('watch', () => first.requests.find((u) => u.searchParams.get('watch')));
    expect(watch.searchParams.get('allowWatchBookmarks')).toBe('true');
    const timeout = Number(watch.searchParams.get('timeoutSeconds'));
    expect(timeout).toBeGreaterThanOrEqual(60);
    expect(timeout).toBeLessThanOrEqual(120);

    first.close();
    await waitFor('disconnect noticed', () => (provider.connected ? undefined : true));
    // Back at the same resourceVersion: the watch resumes (no relist) and no pod event comes.
    const second = await apiServer({ port: Number(new URL(first.url).port), stream: [] });
    await waitFor('resumed watch', () => second.requests.find((u) => u.searchParams.get('watch')));
    await waitFor('connected after the resumed watch', () => (provider.connected ? true : undefined), 2_000);
    expect(second.requests.filter((u) => u.searchParams.get('watch') !== 'true')).toEqual([]);
    expect(provider.lists).toBe(1);
  });

  it("looks owners up: a stand-alone Job named like a CronJob's, a ReplicaSet without a Deployment", async () => {
    const stamp = new Date().toISOString().slice(0, 10).replaceAll('-', '');
    const pod = (name: string, kind: string, owner: string, uid: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'ops',
        uid: `${uid}-pod`,
        resourceVersion: '10',
        labels: { 'pod-template-hash': 'abc12' },
        ownerReferences: [{ apiVersion: 'x', kind, name: owner, uid, controller: true }],
      },
      spec: { nodeName: NODE, containers: [{ name: 'c' }] },
      status: {
        containerStatuses: [{ name: 'c', containerID: `containerd://${uid}`, state: { running: {} } }],
      },
    });
    const api = await serveRecordedPods({
      podList: {
        kind: 'PodList',
        metadata: { resourceVersion: '10' },
        items: [
          pod(`backup-${stamp}-x1`, 'Job', `backup-${stamp}`, 'aa01'),
          pod('cache-abc12-x2', 'ReplicaSet', 'cache-abc12', 'bb02'),
          pod('gone-abc12-x3', 'ReplicaSet', 'gone-abc12', 'cc03'),
        ],
      },
      stream: [],
      owners: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          metadata: { name: `backup-${stamp}`, namespace: 'ops', uid: 'aa01' },
        },
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          metadata: { name: 'cache-abc12', namespace: 'ops', uid: 'bb02' },
        },
      ],
    });
    open.push(() => api.close());
    const records: ContainerRecord[] = [];
    const provider = createKubernetesProvider({ node: NODE, kubeConfig: api.kubeConfig });
    await provider.start((r) => records.push(r));
    open.push(() => void provider.stop());
    const byPod = (name: string) => records.find((r) => r.podName === name);
    expect(byPod(`backup-${stamp}-x1`)).toMatchObject({
      workloadKind: 'Job',
      workloadName: `backup-${stamp}`,
    });
    expect(byPod('cache-abc12-x2')).toMatchObject({
      workloadKind: 'ReplicaSet',
      workloadName: 'cache-abc12',
    });
    // Deleted owner (404): the direct owner, not a failure.
    expect(byPod('gone-abc12-x3')).toMatchObject({ workloadKind: 'ReplicaSet', workloadName: 'gone-abc12' });
    expect(provider.ownerLookupFailures).toBe(0);
  });

  it('retries a lost API server at most maxBackoffMs apart', async () => {
    const first = await apiServer({ stream: [] });
    const provider = createKubernetesProvider({
      node: NODE,
      kubeConfig: first.kubeConfig,
      maxBackoffMs: 400,
    });
    await provider.start(() => {});
    open.push(() => void provider.stop());
    first.close();
    await waitFor('disconnect noticed', () => (provider.connected ? undefined : true));
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 3_000));
    // 500 ms first delay, capped at 400 ms, jittered down to 200-400: at least 7 tries in 3 s.
    expect(provider.restarts).toBeGreaterThanOrEqual(7);
    expect(provider.restarts).toBeLessThanOrEqual(Math.ceil((Date.now() - t0) / 200) + 1);
  });

  it('parses quantities the way the API server writes them', () => {
    expect(parseQuantity('250m')).toBeCloseTo(0.25);
    expect(parseQuantity('1.5')).toBe(1.5);
    expect(parseQuantity('128Mi')).toBe(134217728);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity('1e3')).toBe(1000);
    expect(parseQuantity('12Zi')).toBeUndefined();
    expect(splitContainerId('containerd://abc123')).toEqual({ runtime: 'containerd', id: 'abc123' });
    expect(splitContainerId('')).toBeUndefined();
  });
});
