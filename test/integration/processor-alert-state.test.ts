// Crash loops by workload, and alert state that survives a processor restart and a
// rebalance, on the real broker and chDB. The collector's side is synthetic but carries
// what the collector sends for `docker run --name X ... sh -c 'exit 3'` then `docker rm X`,
// five times (bench/processor/synthetic.ts dockerContainerRun): five container ids, one
// name, each cgroup first described by its path alone. The same through real Docker and the
// real eBPF collector: test/e2e/crash-loop.test.ts.
import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { dockerContainerRun } from '../../bench/processor/synthetic.js';
import { decodeState } from '../../processor/src/alert-state.js';
import type { AlertSnapshot } from '../../processor/src/alerts.js';
import type { Processor } from '../../processor/src/processor.js';
import { type AlertPipeline, alertPipeline } from '../support/alert-pipeline.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { NodeFeed } from '../support/node-feed.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const MS = 1_000_000n;
const NAME = 'crashy';
/** Runs 15 s apart, all within the last few minutes and the 10 min window. */
const BASE_NS = BigInt(Date.now() - 300_000) * MS;

/** Docker's ids are 64 hex digits (a cgroup /docker/<id> is a container only with one). */
const containerId = (node: string, i: number) => createHash('sha256').update(`${node}/${i}`).digest('hex');

function run(node: string, i: number) {
  return dockerContainerRun({
    node,
    name: NAME,
    containerId: containerId(node, i),
    cgroupId: 20_000n + BigInt(i),
    startNs: BASE_NS + BigInt(i) * 15_000n * MS,
    lifeMs: 150,
    exitCode: 3,
  });
}

/** Wall-clock time of run i's exit (its proc_exit event, and the alert it raises). */
const exitNs = (i: number) => BASE_NS + BigInt(i) * 15_000n * MS + 150n * MS;

/** What the collector sends for run i: path-only record, the kernel's events, the named records. */
async function sendRun(feed: NodeFeed, i: number): Promise<void> {
  const r = run(feed.node, i);
  await feed.records([r.pathOnly]);
  await feed.events(r.events);
  await feed.records(r.named);
}

describe('alert state', () => {
  let ch: ClickHouseClient;
  const open: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    ch = await createProcessorStore('alertstate');
  }, 120_000);

  afterAll(async () => {
    for (const o of open) await o.close();
    await ch?.close();
  });

  async function pipeline(tag: string, partitions: number): Promise<AlertPipeline> {
    const p = await alertPipeline((kafka.value as { brokers: string[] }).brokers, ch, tag, partitions);
    open.push(p);
    return p;
  }

  /** The newest saved alert state of every partition of the group. */
  async function saved(groupId: string): Promise<AlertSnapshot[]> {
    const rows = await queryRows<{ state: string }>(
      ch,
      `SELECT argMax(state, saved_at_ns) AS state FROM ktrail.alert_state
       WHERE consumer_group = '${groupId}' GROUP BY partition`,
    );
    return rows.map((r) => decodeState(r.state));
  }

  /** The saved window of a workload: its exits since the last alert, and that alert's time. */
  async function windowOf(groupId: string, workload: string) {
    for (const s of await saved(groupId)) {
      const w = s.crash.windows.find((x) => x.workload === workload);
      if (w !== undefined)
        return { exits: w.exits.length, alertedAtNs: BigInt(w.alertedAtNs), waiting: s.crash.waiting.length };
    }
    return undefined;
  }

  const crashLoops = async (p: AlertPipeline, workload: string) =>
    (await p.alerts()).filter((a) => a.kind === 'crash_loop' && a.details.workload === workload);

  itReal(kafka.missing)(
    'a container re-created 5 times under one name, exit 3 each: one alert, at the 3rd exit',
    async () => {
      const p = await pipeline('al-once', 2);
      const node = 'once-node';
      const workload = `docker/${node}/${NAME}`;
      const feed = new NodeFeed(node, p.producer, p.names);
      open.push({ close: () => feed.stop() });
      await p.processor('once');
      feed.trickle();
      for (let i = 0; i < 5; i++) await sendRun(feed, i);
      await p.until('exits 4 and 5 counted after the alert', async () => {
        const w = await windowOf(p.groupId, workload);
        return w?.exits === 2 && w.waiting === 0;
      });
      const alerts = await crashLoops(p, workload);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({
        node,
        container: containerId(node, 2),
        containerName: NAME,
        timeNs: exitNs(2),
      });
      expect(alerts[0]?.details).toMatchObject({ exits: '3', containers: '3', lastExitCode: '3' });
      expect((await windowOf(p.groupId, workload))?.alertedAtNs).toBe(exitNs(2));
    },
    120_000,
  );

  itReal(kafka.missing)(
    'across a processor restart after 2 exits: one alert, raised by the new processor at the 3rd',
    async () => {
      const p = await pipeline('al-restart', 2);
      const node = 'restart-node';
      const workload = `docker/${node}/${NAME}`;
      const feed = new NodeFeed(node, p.producer, p.names);
      open.push({ close: () => feed.stop() });
      const first = await p.processor('restart-1');
      feed.trickle();
      for (let i = 0; i < 2; i++) await sendRun(feed, i);
      await p.until(
        'two exits counted and saved',
        async () => (await windowOf(p.groupId, workload))?.exits === 2,
      );
      await first.stop();
      const second = await p.processor('restart-2');
      for (let i = 2; i < 5; i++) await sendRun(feed, i);
      await p.until('exits 4 and 5 counted after the alert', async () => {
        const w = await windowOf(p.groupId, workload);
        return w?.exits === 2 && w.alertedAtNs > 0n && w.waiting === 0;
      });
      const alerts = await crashLoops(p, workload);
      // Without the restored state the new processor would have seen 3 exits only at the 5th.
      expect(alerts).toHaveLength(1);
      expect(alerts[0]?.timeNs).toBe(exitNs(2));
      expect(alerts[0]?.details.exits).toBe('3');
      expect(first.stats().alerts).toBe(0);
      expect(second.stats().alerts).toBeGreaterThanOrEqual(1);
      expect(second.stats().alertStateFailures).toBe(0);
    },
    120_000,
  );

  itReal(kafka.missing)(
    'rebalance 1 -> 2 members mid-loop: the state moves with the partition, each loop alerts once',
    async () => {
      const p = await pipeline('al-rebal', 2);
      const feeds = [0, 1].map(
        (partition) => new NodeFeed(`rebal-node-${partition}`, p.producer, p.names, partition),
      );
      for (const f of feeds) open.push({ close: () => f.stop() });
      const latest = new Map<string, number[]>(); // member -> events partitions of its last assignment
      const hooks = {
        onAssigned: ({ memberId, assignment }: { memberId: string; assignment: Record<string, number[]> }) =>
          void latest.set(memberId, [...(assignment[p.names.events] ?? [])].sort()),
      };
      const a = await p.processor('rebal-a', hooks);
      await p.until('a holds both partitions', () => latest.get(a.memberId())?.length === 2 && a.ready());
      for (const f of feeds) f.trickle();
      for (let i = 0; i < 2; i++) for (const f of feeds) await sendRun(f, i);
      for (const f of feeds)
        await p.until(`two exits of ${f.node} saved`, async () => {
          return (await windowOf(p.groupId, `docker/${f.node}/${NAME}`))?.exits === 2;
        });
      const b: Processor = await p.processor('rebal-b', hooks);
      await p.until(
        'one partition each',
        () =>
          latest.get(b.memberId())?.length === 1 &&
          latest.get(a.memberId())?.length === 1 &&
          a.ready() &&
          b.ready(),
      );
      for (const f of feeds) await sendRun(f, 2);
      for (const f of feeds)
        await p.until(`the alert of ${f.node}`, async () => {
          const w = await windowOf(p.groupId, `docker/${f.node}/${NAME}`);
          return w !== undefined && w.alertedAtNs > 0n && w.waiting === 0;
        });
      for (const f of feeds) {
        const alerts = await crashLoops(p, `docker/${f.node}/${NAME}`);
        expect(alerts, f.node).toHaveLength(1);
        expect(alerts[0]?.timeNs).toBe(exitNs(2));
      }
      // The member that got a partition mid-loop finished that loop from the saved state.
      expect(b.stats().alerts).toBe(1);
      expect(a.stats().alerts).toBe(1);
    },
    180_000,
  );
});
