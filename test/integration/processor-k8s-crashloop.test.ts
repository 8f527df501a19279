// A Kubernetes pod whose container crash-loops (4 restarts), from a recorded pod watch
// stream (test/fixtures/k8s/watch-crashloop.jsonl, replayed relative to now) through the
// collector's real Kubernetes provider and container registry, to the processor on the real
// broker and chDB: every restart is a new container id, and the processor raises one
// crash_loop alert for the pod's container.
//
// As on a node: the kernel reports each container's cgroup and its process's exit before
// the kubelet's status names the container, so the exits first join the registry's
// path-only records (which reach the processor after the exits) and wait for the pod watch
// to name them.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { BOOT_EPOCH_NS } from '../../bench/processor/synthetic.js';
import { toAvroContainer } from '../../collector/src/build.js';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import { ContainerRegistry } from '../../collector/src/containers/index.js';
import { createKubernetesProvider } from '../../collector/src/containers/providers/kubernetes.js';
import { decodeState } from '../../processor/src/alert-state.js';
import type { KtrailEvent } from '../../schemas/types.js';
import { type AlertPipeline, alertPipeline } from '../support/alert-pipeline.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { NodeFeed } from '../support/node-feed.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { serveRecordedPods, shiftTimes } from '../support/recorded-k8s.js';

const kafka = endpointOrReason(inject('kafka'));
const MS = 1_000_000n;

interface PodEvent {
  object: {
    metadata: { name: string; namespace: string; uid: string; creationTimestamp: string };
    spec: { nodeName: string };
    status: {
      containerStatuses?: {
        name: string;
        containerID?: string;
        state: { running?: { startedAt: string }; terminated?: { startedAt: string; finishedAt: string } };
      }[];
    };
  };
}

/** The recording, moved so that the pod was created 10 minutes ago. */
function recording(): string[] {
  const text = readFileSync(new URL('../fixtures/k8s/watch-crashloop.jsonl', import.meta.url), 'utf8');
  const created = (JSON.parse(text.split('\n')[0] as string) as PodEvent).object.metadata.creationTimestamp;
  return shiftTimes(text, Date.now() - 600_000 - Date.parse(created))
    .trim()
    .split('\n');
}

/** Each container instance of the recording, in order: id, start, exit (wall ns). */
function instances(stream: string[]): { id: string; startNs: bigint; exitNs?: bigint }[] {
  const byId = new Map<string, { id: string; startNs: bigint; exitNs?: bigint }>();
  const ns = (t: string) => BigInt(Date.parse(t)) * MS;
  for (const line of stream) {
    for (const st of (JSON.parse(line) as PodEvent).object.status.containerStatuses ?? []) {
      const id = st.containerID?.replace(/^[a-z-]+:\/\//, '');
      const started = st.state.running?.startedAt ?? st.state.terminated?.startedAt;
      if (id === undefined || started === undefined) continue;
      const known = byId.get(id) ?? { id, startNs: ns(started) };
      if (st.state.terminated !== undefined) known.exitNs = ns(st.state.terminated.finishedAt);
      byId.set(id, known);
    }
  }
  return [...byId.values()];
}

/** What the kernel reports for one container instance: its cgroup, its process's exec and exit. */
function kernelEvents(
  cgroupId: bigint,
  path: string,
  startNs: bigint,
  exitNs: bigint | undefined,
): KtrailEvent[] {
  const ts = (wall: bigint) => wall - BOOT_EPOCH_NS;
  const task = {
    cgroupId,
    pid: 31_000 + Number(cgroupId % 1000n),
    tgid: 31_000 + Number(cgroupId % 1000n),
    flags: 0,
  };
  const events: KtrailEvent[] = [
    {
      kind: 'cgroup_mkdir',
      tsNs: ts(startNs - 40n * MS),
      cgroupId,
      pid: 0,
      tgid: 0,
      flags: 0,
      level: 4,
      hierarchyId: 0,
      path,
    },
    {
      kind: 'proc_exec',
      tsNs: ts(startNs),
      ...task,
      ppid: 1,
      uid: 0,
      gid: 0,
      argsCount: 1,
      argsSize: 9,
      comm: 'checkout',
      filename: '/checkout',
      args: ['/checkout'],
    },
  ];
  if (exitNs !== undefined)
    events.push({
      kind: 'proc_exit',
      tsNs: ts(exitNs),
      ...task,
      ppid: 1,
      exitCode: 1,
      signal: 0,
      coreDumped: 0,
      startNs: ts(startNs),
      cpuNs: 40_000_000n,
      comm: 'checkout',
    });
  return events;
}

describe('kubernetes crash loop', () => {
  let ch: ClickHouseClient;
  const open: { close(): Promise<void> | void }[] = [];

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    ch = await createProcessorStore('k8scrash');
  }, 120_000);

  afterAll(async () => {
    for (const o of open.reverse()) await o.close();
    await ch?.close();
  });

  itReal(kafka.missing)(
    'a recorded pod watch stream with 4 container restarts of one pod: one crash_loop alert',
    async () => {
      const stream = recording();
      const pod = (JSON.parse(stream[0] as string) as PodEvent).object;
      const node = pod.spec.nodeName;
      const runs = instances(stream);
      expect(runs).toHaveLength(5); // the first container and 4 restarts
      expect(runs.filter((r) => r.exitNs !== undefined)).toHaveLength(4);
      const workload = `k8s/${pod.metadata.namespace}/${pod.metadata.uid}/app`;

      const p: AlertPipeline = await alertPipeline(
        (kafka.value as { brokers: string[] }).brokers,
        ch,
        'k8s-crash',
        2,
      );
      open.push(p);
      const feed = new NodeFeed(node, p.producer, p.names);
      open.push({ close: () => feed.stop() });
      const api = await serveRecordedPods({
        podList: { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '4000' }, items: [] },
        stream,
      });
      open.push(api);
      const resolver = await CgroupResolver.create({
        mountPoint: mkdtempSync(join(tmpdir(), 'ktrail-k8s-cg-')),
      });
      const registry = new ContainerRegistry({
        node,
        resolver,
        providers: [createKubernetesProvider({ node, kubeConfig: api.kubeConfig })],
        // Records reach Kafka after the exits they describe (another topic, another producer
        // call): the exits wait for late metadata and must still wait for the name.
        onRecord: (r) =>
          void setTimeout(
            () => void feed.records([toAvroContainer(r) as unknown as Record<string, unknown>]),
            400,
          ),
        bootToWallNs: (ns) => BOOT_EPOCH_NS + ns,
      });
      open.push({ close: () => registry.stop() });

      const processor = await p.processor('k8s-crash');
      feed.trickle();
      // The kernel's side first: cgroups (the registry publishes their paths) and exits.
      const slice = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${pod.metadata.uid.replaceAll('-', '_')}.slice`;
      for (const [k, r] of runs.entries()) {
        const cgroupId = 30_000n + BigInt(k);
        const path = `${slice}/cri-containerd-${r.id}.scope`;
        resolver.apply({ kind: 'cgroup_mkdir', cgroupId, path, tsNs: r.startNs - 40n * MS - BOOT_EPOCH_NS });
        await feed.events(kernelEvents(cgroupId, path, r.startNs, r.exitNs));
      }
      // The node's partition is the only one with batches, so the group's only saved state.
      const state = async () => {
        const [row] = await queryRows<{ state: string }>(
          ch,
          `SELECT argMax(state, saved_at_ns) AS state FROM ktrail.alert_state
           WHERE consumer_group = '${p.groupId}' HAVING count() > 0`,
        );
        return row === undefined ? undefined : decodeState(row.state).crash;
      };
      await p.until(
        'the four exits waiting for their container to be named',
        async () => (await state())?.waiting.length === 4,
      );

      // Then the kubelet's reports, through the pod watch.
      await registry.start();
      await p.until('the watch stream replayed', () => api.sent() === stream.length);
      await p.until('the loop counted under the pod container', async () => {
        const s = await state();
        const w = s?.windows.find((x) => x.workload === workload);
        return (
          s?.waiting.length === 0 && w !== undefined && BigInt(w.alertedAtNs) > 0n && w.exits.length === 1
        );
      });

      const alerts = (await p.alerts()).filter((a) => a.kind === 'crash_loop');
      expect(alerts).toHaveLength(1);
      const third = runs[2] as (typeof runs)[number];
      expect(alerts[0]).toMatchObject({
        node,
        container: third.id,
        containerName: 'app',
        namespace: pod.metadata.namespace,
        pod: pod.metadata.name,
        timeNs: third.exitNs,
      });
      expect(alerts[0]?.details).toMatchObject({ workload, exits: '3', containers: '3', lastExitCode: '1' });
      expect(processor.stats().alertStateFailures).toBe(0);
    },
    180_000,
  );
});
