// The workload identity columns on every row, from real runtimes: a Docker container with
// Compose labels (real dockerd), a containerd container in a namespace of its own named as
// nerdctl names them (real containerd, ctr), and a Kubernetes pod's container (a CRI-labelled containerd container in
// k8s.io with the id a recorded pod watch stream gives it, served to the collector's real
// Kubernetes provider). The collector's real providers and container registry publish the
// records, the kernel's side is written as the collector would send it (an exec and a CPU
// sample per container's real cgroup id, a host sample on the root cgroup), and the processor
// joins them on the real broker into the real chDB store. Every column a runtime has is filled,
// in the raw tables, the containers table and the enriched topic.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { BOOT_EPOCH_NS } from '../../bench/processor/synthetic.js';
import { toAvroContainer } from '../../collector/src/build.js';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry } from '../../collector/src/containers/index.js';
import { createContainerdProvider } from '../../collector/src/containers/providers/containerd.js';
import { createDockerProvider } from '../../collector/src/containers/providers/docker.js';
import { createKubernetesProvider } from '../../collector/src/containers/providers/kubernetes.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { parseMountInfo } from '../../common/cgroup-memory.js';
import type { EnrichedContainer } from '../../processor/src/enriched.js';
import { IDENTITY_COLUMNS } from '../../processor/src/workload.js';
import type * as Avro from '../../schemas/types.js';
import type { KtrailEvent } from '../../schemas/types.js';
import { type AlertPipeline, alertPipeline } from '../support/alert-pipeline.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { type ContainerdEndpoint, type DockerEndpoint, ensureContainerd } from '../support/docker.js';
import { NodeFeed } from '../support/node-feed.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { type RecordedPods, serveRecordedPods, shiftTimes } from '../support/recorded-k8s.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const kafka = endpointOrReason(inject('kafka'));
const docker = endpointOrReason<DockerEndpoint>(inject('docker'));
const containerd: { value?: ContainerdEndpoint; missing?: string } = missingRoot()
  ? { missing: 'needs root' }
  : await ensureContainerd().then(
      (value) => ({ value }),
      (err: Error) => ({ missing: `containerd unavailable: ${err.message}` }),
    );
const it = itReal(missingRoot() ?? kafka.missing ?? docker.missing ?? containerd.missing);

const TAG = randomBytes(3).toString('hex');
const NODE = `wl-${TAG}`;
const CTR_NS = `ktrail-wl-${TAG}`;
const COMPOSE = { project: `shop${TAG}`, service: 'api' };
const DOCKER_NAME = `${COMPOSE.project}-api-1`;
/** As nerdctl makes them: a 64-hex id (what the cgroup path names) and the name in a label. */
const CTR_ID = randomBytes(32).toString('hex');
const CTR_NAME = `cache-${TAG}`;
const MS = 1_000_000n;

/** The recording, shifted to have started 10 minutes ago; its pod and last container id. */
function recording() {
  const text = readFileSync(new URL('../fixtures/k8s/watch-crashloop.jsonl', import.meta.url), 'utf8');
  const first = JSON.parse(text.split('\n')[0] as string);
  const lines = shiftTimes(text, Date.now() - 600_000 - Date.parse(first.object.metadata.creationTimestamp))
    .trim()
    .split('\n');
  const last = JSON.parse(lines.at(-1) as string).object;
  const id = String(last.status.containerStatuses[0].containerID).replace(/^containerd:\/\//, '');
  return { lines, pod: last.metadata as { name: string; namespace: string; uid: string }, id };
}

const cleanup: (() => Promise<unknown>)[] = [];
const ctr = (ns: string, ...args: string[]) =>
  run('ctr', ['--address', containerd.value?.socketPath ?? '', '-n', ns, ...args], { timeout: 60_000 });
async function ctrRemove(ns: string, id: string): Promise<void> {
  await ctr(ns, 'task', 'kill', '-s', 'KILL', id).catch(() => {});
  await ctr(ns, 'task', 'rm', '-f', id).catch(() => {});
  await ctr(ns, 'container', 'rm', id).catch(() => {});
}

/** What the kernel reports for a container's cgroup: an exec and a CPU sample, now. */
function kernelEvents(cgroupId: bigint, pid: number): KtrailEvent[] {
  const tsNs = BigInt(Date.now()) * MS - BOOT_EPOCH_NS;
  const task = { cgroupId, pid, tgid: pid, flags: 0 };
  return [
    {
      kind: 'proc_exec',
      tsNs,
      ...task,
      ppid: 1,
      uid: 0,
      gid: 0,
      argsCount: 2,
      argsSize: 9,
      comm: 'sleep',
      filename: '/bin/sleep',
      args: ['sleep', '300'],
    },
    {
      kind: 'cpu_sample',
      tsNs,
      cgroupId,
      pid: 0,
      tgid: 0,
      flags: 0,
      cpuNs: 5_000_000n,
      switches: 4n,
      intervalNs: 1_000_000_000n,
    },
  ];
}

type Runtime = 'docker' | 'containerd' | 'k8s';
type IdRow = Record<(typeof IDENTITY_COLUMNS)[number] | 'join_state' | 'cgroup_id', string>;
const open: { close(): Promise<void> | void }[] = [];

/** The runtimes' containers, live while the test runs; their ids. */
async function startContainers(rec: ReturnType<typeof recording>): Promise<Record<Runtime, string>> {
  const ep = containerd.value as ContainerdEndpoint;
  cleanup.push(() => run('docker', ['rm', '-f', DOCKER_NAME]));
  const { stdout } = await run('docker', [
    ...['run', '-d', '--network', 'none', '--name', DOCKER_NAME],
    ...['--label', `com.docker.compose.project=${COMPOSE.project}`],
    ...['--label', `com.docker.compose.service=${COMPOSE.service}`],
    ...[(docker.value as DockerEndpoint).image, 'sleep', '300'],
  ]);
  const archive = `/tmp/ktrail-wl-${TAG}.tar`;
  await ctr(ep.namespace, 'image', 'export', archive, ep.image);
  await ctr(CTR_NS, 'image', 'import', archive);
  cleanup.push(async () => {
    await ctrRemove(CTR_NS, CTR_ID);
    await ctr(CTR_NS, 'image', 'rm', ep.image).catch(() => {});
    // containerd removes the container's snapshot in the background: a namespace still
    // holding it refuses to go, so a few tries.
    for (let i = 0; i < 20; i++) {
      const removed = await run('ctr', ['--address', ep.socketPath, 'namespaces', 'rm', CTR_NS]).then(
        () => true,
        () => false,
      );
      if (removed) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    // runc leaves the namespace's parent cgroup (/<namespace>) in every hierarchy, empty.
    for (const { mountPoint, fsType } of parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')))
      if (fsType.startsWith('cgroup'))
        try {
          rmdirSync(join(mountPoint, CTR_NS));
        } catch {}
    await run('rm', ['-f', archive]);
  });
  await ctr(CTR_NS, 'run', '-d', '--label', `nerdctl/name=${CTR_NAME}`, ep.image, CTR_ID, 'sleep', '300');
  // The kubelet's container: CRI labels, in k8s.io, under the id the pod status names.
  await ctrRemove('k8s.io', rec.id);
  cleanup.push(() => ctrRemove('k8s.io', rec.id));
  const cri = {
    'io.kubernetes.pod.name': rec.pod.name,
    'io.kubernetes.pod.namespace': rec.pod.namespace,
    'io.kubernetes.pod.uid': rec.pod.uid,
    'io.kubernetes.container.name': 'app',
  };
  const labels = Object.entries(cri).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  await ctr('k8s.io', 'run', '-d', ...labels, ep.image, rec.id, 'sleep', '300');
  return { docker: stdout.trim(), containerd: CTR_ID, k8s: rec.id };
}

/**
 * The collector's side: the real providers and registry publishing to the containers topic.
 * Resolves with each container's cgroup id once its record is complete.
 */
async function startRegistry(
  p: AlertPipeline,
  feed: NodeFeed,
  rec: ReturnType<typeof recording>,
  ids: Record<Runtime, string>,
): Promise<Record<Runtime, bigint>> {
  const api = await serveRecordedPods({
    podList: { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '4000' }, items: [] },
    stream: rec.lines,
    // The pod's ReplicaSet, answered so the provider finds its Deployment as on a cluster.
    owners: (
      JSON.parse(readFileSync(new URL('../fixtures/k8s/owners.json', import.meta.url), 'utf8')) as {
        items: NonNullable<RecordedPods['owners']>;
      }
    ).items,
  });
  open.push(api);
  const resolver = await CgroupResolver.create();
  const latest = new Map<string, ContainerRecord>();
  const common = { node: NODE, cgroups: resolver };
  const registry = new ContainerRegistry({
    node: NODE,
    resolver,
    providers: [
      createDockerProvider({ ...common, socketPath: (docker.value as DockerEndpoint).socketPath }),
      createContainerdProvider({
        ...common,
        socketPath: (containerd.value as ContainerdEndpoint).socketPath,
        namespaces: [CTR_NS, 'k8s.io'],
      }),
      createKubernetesProvider({ node: NODE, kubeConfig: api.kubeConfig }),
    ],
    onRecord: (r) => {
      latest.set(r.containerId, r);
      void feed.records([toAvroContainer(r) as unknown as Record<string, unknown>]);
    },
    bootToWallNs: (ns) => BOOT_EPOCH_NS + ns,
  });
  open.push({ close: () => registry.stop() });
  await registry.start();
  await p.until('the pod watch replayed', () => api.sent() === rec.lines.length);
  const described = async (id: string, check: (r: ContainerRecord) => boolean) =>
    (
      await waitFor(`the record of ${id}`, () => {
        const r = latest.get(id);
        return r !== undefined && r.cgroupId !== 0n && check(r) ? r : undefined;
      })
    ).cgroupId;
  return {
    docker: await described(ids.docker, (r) => r.name === DOCKER_NAME),
    containerd: await described(ids.containerd, (r) => r.runtimeNamespace === CTR_NS),
    k8s: await described(ids.k8s, (r) => r.workloadName === 'checkout' && r.runtimeNamespace === 'k8s.io'),
  };
}

/** Every identity column each runtime has, as its rows must carry it. */
function expectedColumns(
  rec: ReturnType<typeof recording>,
  ids: Record<Runtime, string>,
): Record<Runtime | 'host', Partial<IdRow>> {
  const ep = containerd.value as ContainerdEndpoint;
  return {
    docker: {
      container_id: ids.docker,
      container_name: DOCKER_NAME,
      image: (docker.value as DockerEndpoint).image,
      container_runtime: 'docker',
      compose_project: COMPOSE.project,
      compose_service: COMPOSE.service,
      workload: `${COMPOSE.project}/${COMPOSE.service}`,
      pod: '',
      containerd_namespace: '',
    },
    containerd: {
      container_id: CTR_ID,
      container_name: CTR_NAME,
      image: ep.image,
      container_runtime: 'containerd',
      containerd_namespace: CTR_NS,
      workload: CTR_NAME,
      pod: '',
      compose_project: '',
    },
    // The image too, whichever source spoke last (containerd or the pod status): checked non-empty.
    k8s: {
      container_id: rec.id,
      container_name: 'app',
      container_runtime: 'containerd',
      pod: rec.pod.name,
      pod_uid: rec.pod.uid,
      namespace: rec.pod.namespace,
      k8s_container_name: 'app',
      workload_kind: 'Deployment',
      workload_name: 'checkout',
      containerd_namespace: 'k8s.io',
      workload: `${rec.pod.namespace}/checkout`,
      compose_project: '',
    },
    host: { workload: 'host', container_id: '', container_name: '', pod: '' },
  };
}

describe('workload identity from real runtimes, on every row and in the enriched topic', () => {
  let ch: ClickHouseClient;

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    ch = await createProcessorStore('wlid');
  }, 120_000);

  afterAll(async () => {
    for (const o of open.reverse()) await o.close();
    for (const c of cleanup.reverse()) await c().catch(() => {});
    await ch?.close();
  }, 120_000);

  it('Compose-labelled Docker, containerd in a namespace, a Kubernetes pod, the host', async () => {
    const rec = recording();
    const ids = await startContainers(rec);
    const p = await alertPipeline((kafka.value as { brokers: string[] }).brokers, ch, 'wl-id', 2);
    open.push(p);
    const feed = new NodeFeed(NODE, p.producer, p.names);
    open.push({ close: () => feed.stop() });
    const processor = await p.processor('wl-id');
    const cgroups = await startRegistry(p, feed, rec, ids);

    // The processor has the records it joins with once it wrote them (it joins with the version
    // it holds when the events come: the registry published path-only and runtime-only ones first).
    const workloads = [`${COMPOSE.project}/${COMPOSE.service}`, CTR_NAME, `${rec.pod.namespace}/checkout`];
    await p.until('the three records in the containers table', async () => {
      const rows = await queryRows<{ workload: string }>(
        ch,
        `SELECT DISTINCT workload FROM ktrail.containers_latest WHERE node = '${NODE}' AND workload IN ('${workloads.join("', '")}')`,
      );
      return rows.length === 3;
    });

    // The kernel's side: each container's cgroup, and the host's root cgroup.
    await feed.events([
      ...kernelEvents(cgroups.docker, 41_001),
      ...kernelEvents(cgroups.containerd, 41_002),
      ...kernelEvents(cgroups.k8s, 41_003),
      ...kernelEvents(1n, 41_004),
    ]);
    const rowsOf = (table: string) =>
      queryRows<IdRow>(
        ch,
        `SELECT cgroup_id, join_state, ${IDENTITY_COLUMNS.join(', ')} FROM ktrail.${table}
         WHERE node = '${NODE}' AND cgroup_id IN (${cgroups.docker}, ${cgroups.containerd}, ${cgroups.k8s}, 1)`,
      );
    await p.until('every exec written', async () => (await rowsOf('proc_exec')).length === 4);
    const expected = expectedColumns(rec, ids);
    const byCgroup = new Map<string, Runtime | 'host'>([
      [String(cgroups.docker), 'docker'],
      [String(cgroups.containerd), 'containerd'],
      [String(cgroups.k8s), 'k8s'],
      ['1', 'host'],
    ]);
    for (const table of ['proc_exec', 'cpu_sample']) {
      const rows = await rowsOf(table);
      const which = rows.map((r) => byCgroup.get(String(r.cgroup_id)) as Runtime | 'host');
      expect([...which].sort(), table).toEqual(['containerd', 'docker', 'host', 'k8s']);
      rows.forEach((r, i) => {
        const w = which[i] as Runtime | 'host';
        expect(r, `${table} ${w}`).toMatchObject({
          join_state: w === 'host' ? 'host' : 'joined',
          ...expected[w],
        });
      });
      expect(rows.find((r) => r.container_id === ids.k8s)?.image, table).not.toBe('');
    }

    // The containers table names them the same way.
    const dims = await queryRows<Record<string, string>>(
      ch,
      `SELECT container_id, container_runtime, pod_uid, k8s_container_name, workload_kind, workload_name,
         compose_project, compose_service, containerd_namespace, workload
       FROM ktrail.containers_latest WHERE node = '${NODE}' AND container_id IN ('${Object.values(ids).join("', '")}')`,
    );
    for (const which of ['docker', 'containerd', 'k8s'] as const) {
      const { container_name: _, image: __, pod: ___, namespace: ____, ...onContainers } = expected[which];
      expect(
        dims.find((r) => r.container_id === ids[which]),
        which,
      ).toMatchObject(onContainers);
    }

    // The enriched topic: each container once per message, with the same values in camelCase.
    const batches = ((await p.read('enriched')) as Avro.EnrichedBatch[]).filter((b) => b.node === NODE);
    const containers = batches.flatMap((b) => b.containers);
    const camel = (c: string) => c.replace(/_([a-z0-9])/g, (_, x: string) => x.toUpperCase());
    for (const which of ['docker', 'containerd', 'k8s'] as const) {
      const c = containers.find((x) => x.containerId === ids[which]) as EnrichedContainer | undefined;
      expect(c, which).toBeDefined();
      for (const [column, value] of Object.entries(expected[which]))
        expect(c?.[camel(column) as keyof EnrichedContainer], `${which} ${column}`).toBe(value);
      expect(c?.image, which).not.toBe('');
    }
    const host = batches.flatMap((b) => b.events).find((e) => e.event.cgroupId === 1n);
    expect(host).toMatchObject({ joinState: 'host', container: -1 });
    expect(processor.stats().deadLetters ?? 0).toBe(0);
  }, 240_000);
});
