// The crash-loop rule keyed by workload, its idempotence on replay, and the keeper that
// saves and restores alert state (with a fake store: the real table is in the
// integration tests, test/integration/processor-alert-state.test.ts).
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import {
  AlertStateKeeper,
  type AlertStateKey,
  type AlertStateStore,
  decodeState,
  type SavedAlertState,
} from '../../processor/src/alert-state.js';
import { type Alert, AlertEngine, type AlertRules } from '../../processor/src/alerts.js';
import { CrashLoopRule } from '../../processor/src/crash-loop.js';
import { applyHost, applyJoin, markPending } from '../../processor/src/join-identity.js';
import type { ContainerMeta } from '../../processor/src/metadata-table.js';
import { type CutBatch, type EventRow, encodeCut, type Row } from '../../processor/src/partition-batch.js';
import { rowWorkload, workloadIdentity } from '../../processor/src/workload.js';
import { testEventRow } from '../support/event-row.js';

const MS = 1_000_000n;
const NOW_NS = BigInt(Date.now()) * MS;
const rules: AlertRules = {
  oomKill: true,
  crashLoopExits: 3,
  crashLoopWindowMs: 60_000,
  tcpSpikeThreshold: 10,
  tcpSpikeWindowMs: 1_000,
  sequenceGap: true,
};

function meta(over: Partial<ContainerMeta> = {}): ContainerMeta {
  return {
    node: 'n1',
    cgroupId: 7n,
    containerId: 'c0',
    runtime: 'docker',
    cgroupPath: '/docker/c0',
    name: 'web',
    image: 'img',
    labels: {},
    pod: '',
    podUid: '',
    namespace: '',
    workloadKind: '',
    workload: '',
    runtimeNamespace: '',
    startedAtNs: 0n,
    stoppedAtNs: 0n,
    updatedAtNs: 0n,
    state: 'RUNNING',
    ...over,
  };
}

/** A proc_exit row as the processor builds it, joined with `m`, `i` seconds after NOW_NS. */
function exitRow(m: ContainerMeta, i: number, code = 3): EventRow {
  const t = NOW_NS + BigInt(i) * 1_000n * MS;
  const row = testEventRow(
    'proc_exit',
    { tsNs: BigInt(1_000 + i), tgid: 100 + i, exitCode: code, signal: 0 },
    { node: m.node, bootId: 'boot-1', timeNs: t },
  );
  applyJoin(row, m);
  return row;
}

const recreated = (i: number) => meta({ containerId: `c${i}`, cgroupId: BigInt(10 + i) });

function cutOf(first: bigint, last: bigint, tables: Record<string, Row[]> = {}): CutBatch {
  return {
    firstOffset: first,
    lastOffset: last,
    tables: new Map(Object.entries(tables)),
    rows: 0,
    latePending: 0,
    expired: new Map(),
    duplicates: new Map(),
    resumed: false,
  };
}

const envelope = (node: string, sequence: number): Row => ({
  node,
  boot_id: 'boot-1',
  sequence: String(sequence),
});

class FakeStore implements AlertStateStore {
  rows: (SavedAlertState & { key: AlertStateKey; token: string })[] = [];
  failLoads = 0;
  failSaves = 0;
  async load(key: AlertStateKey): Promise<SavedAlertState | undefined> {
    if (this.failLoads-- > 0) throw new Error('store down');
    return this.rows.filter((r) => r.key.partition === key.partition && r.key.group === key.group).at(-1);
  }
  async save(key: AlertStateKey, saved: SavedAlertState, token: string): Promise<void> {
    if (this.failSaves-- > 0) throw new Error('store down');
    this.rows.push({ ...saved, key, token });
  }
}

function keeper(store: AlertStateStore, failures: { n: number } = { n: 0 }): AlertStateKeeper {
  return new AlertStateKeeper({
    store,
    group: 'g',
    topic: 'events',
    log: createLogger('test').child({}, { level: 'silent' }),
    countFailure: () => failures.n++,
    restoreTimeoutMs: 200,
    retryInitialMs: 10,
    retryMaxMs: 20,
  });
}

describe('workload identity', () => {
  it.each([
    ['docker: node and name', meta(), 'docker/n1/web'],
    ['podman like docker', meta({ runtime: 'podman' }), 'podman/n1/web'],
    [
      'kubernetes: namespace, pod uid, container',
      meta({ runtime: 'containerd', pod: 'web-1', podUid: 'u-1', namespace: 'shop', name: 'app' }),
      'k8s/shop/u-1/app',
    ],
    [
      'kubernetes without a uid: the pod name',
      meta({ runtime: 'containerd', pod: 'web-1', namespace: 'shop', name: 'app' }),
      'k8s/shop/web-1/app',
    ],
    [
      'kubernetes on cri-dockerd: the CRI container-name label, not the attempt-numbered name',
      meta({
        podUid: 'u-1',
        namespace: 'shop',
        name: 'k8s_app_web-1_shop_u-1_3',
        labels: { 'io.kubernetes.container.name': 'app' },
      }),
      'k8s/shop/u-1/app',
    ],
    [
      'containerd: namespace from the cgroup path, and name',
      meta({ runtime: 'containerd', cgroupPath: '/default/job', name: 'job' }),
      'containerd/n1/default/job',
    ],
    ['unknown runtime: container id', meta({ runtime: 'cri-o', name: 'x' }), 'container/n1/c0'],
    ['no name: container id', meta({ name: '' }), 'container/n1/c0'],
    [
      "the collector's path-only record of a pod's container: container id",
      meta({ runtime: 'containerd', podUid: 'u-1', name: '' }),
      'container/n1/c0',
    ],
  ])('%s', (_, m, expected) => {
    expect(workloadIdentity(m)).toBe(expected);
  });

  it('comes from the record a row was joined with, or known by; rows with none have none', () => {
    expect(rowWorkload(exitRow(meta({ name: 'api' }), 0))).toBe('docker/n1/api');
    const pathOnly = testEventRow('proc_exit', {}, { node: 'n1', timeNs: NOW_NS });
    markPending(pathOnly, meta({ name: '' }));
    expect(rowWorkload(pathOnly)).toBe('container/n1/c0');
    const unjoined = testEventRow('proc_exit', {}, { node: 'n2', timeNs: NOW_NS });
    expect(rowWorkload(unjoined)).toBe('');
    applyHost(unjoined);
    expect(rowWorkload(unjoined)).toBe('');
  });
});

describe('crash-loop rule by workload', () => {
  it('a container re-created 5 times under one name, exit 3 each: one alert, at the 3rd exit', () => {
    const e = new AlertEngine(rules);
    const out: Alert[] = [];
    for (let i = 0; i < 5; i++) e.observe('proc_exit', exitRow(recreated(i), i), out);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ kind: 'crash_loop', container: 'c2', containerName: 'web' });
    expect(out[0]?.timeNs).toBe(NOW_NS + 2_000n * MS);
    expect(out[0]?.details).toMatchObject({
      workload: 'docker/n1/web',
      exits: '3',
      containers: '3',
      lastExitCode: '3',
      firstExitNs: String(NOW_NS),
    });
  });

  it('the same name on two nodes, or two names, are two workloads', () => {
    const e = new AlertEngine(rules);
    const out: Alert[] = [];
    for (let i = 0; i < 2; i++) {
      e.observe('proc_exit', exitRow(recreated(i), i), out);
      e.observe('proc_exit', exitRow(meta({ node: 'n2', containerId: `d${i}` }), i), out);
      e.observe('proc_exit', exitRow(meta({ name: 'other', containerId: `e${i}` }), i), out);
    }
    expect(out).toHaveLength(0);
  });

  it('a replayed batch counts nothing twice, before and after the alert', () => {
    const e = new AlertEngine(rules);
    const out: Alert[] = [];
    const rows = [0, 1, 2, 3].map((i) => exitRow(recreated(i), i));
    e.observe('proc_exit', rows[0] as EventRow, out);
    e.observe('proc_exit', rows[1] as EventRow, out);
    e.observe('proc_exit', rows[1] as EventRow, out); // replay of an exit not yet alerted on
    expect(out).toHaveLength(0);
    e.observe('proc_exit', rows[2] as EventRow, out);
    for (const r of rows.slice(0, 3)) e.observe('proc_exit', r, out); // replay of the alerted ones
    e.observe('proc_exit', rows[3] as EventRow, out);
    expect(out).toHaveLength(1);
  });

  it('snapshot -> restore -> replay of the last batch: one alert in all', () => {
    const first = new AlertEngine(rules);
    const out: Alert[] = [];
    const rows = [0, 1, 2].map((i) => exitRow(recreated(i), i));
    for (const r of rows) first.observe('proc_exit', r, out);
    const next = new AlertEngine(rules);
    next.restore(decodeState(JSON.stringify({ v: 1, snapshot: first.snapshot() })), { sequences: true });
    for (const r of rows) next.observe('proc_exit', r, out);
    expect(out).toHaveLength(1);
    // The loop goes on: three more exits are the next alert.
    for (let i = 3; i < 6; i++) next.observe('proc_exit', exitRow(recreated(i), i), out);
    expect(out).toHaveLength(2);
  });

  it('forgets workloads quiet for two windows (event time), keeps the rest', () => {
    const e = new AlertEngine(rules);
    const out: Alert[] = [];
    e.observe('proc_exit', exitRow(meta({ name: 'old' }), 0), out);
    e.observe('proc_exit', exitRow(meta({ name: 'new' }), 130), out); // 130 s > 2 x 60 s later
    expect(e.snapshot().crash.windows.map((c) => c.workload)).toEqual(['docker/n1/new']);
  });
});

describe('exits of containers no record names yet', () => {
  // What the collector sends first for a new cgroup: its path, no name.
  const skeleton = (i: number) =>
    meta({ containerId: `c${i}`, cgroupId: BigInt(10 + i), name: '', image: '', state: 'UNKNOWN' });

  it('wait for the name, and count under the workload once a later record names them', () => {
    const names = new Map<bigint, ContainerMeta>();
    const e = new AlertEngine(rules, (_node, cgroupId) => names.get(cgroupId));
    const out: Alert[] = [];
    for (let i = 0; i < 3; i++) e.observe('proc_exit', exitRow(skeleton(i), i), out);
    expect(out).toHaveLength(0);
    expect(e.snapshot().crash.waiting).toHaveLength(3);
    for (let i = 0; i < 3; i++) names.set(BigInt(10 + i), recreated(i)); // docker inspect answered
    e.commitSequences([]); // the cut committed: the next batch's rules settle first
    e.observe('cpu_sample', testEventRow('cpu_sample'), out);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ kind: 'crash_loop', container: 'c2', containerName: 'web' });
    expect(out[0]?.details.workload).toBe('docker/n1/web');
    expect(e.snapshot().crash.waiting).toHaveLength(0);
  });

  it('survive a snapshot, and count by container id when no name comes in time', () => {
    const a = new AlertEngine(rules, () => undefined);
    const out: Alert[] = [];
    a.observe('proc_exit', exitRow(skeleton(0), 0), out);
    a.observe('proc_exit', exitRow(skeleton(0), 0), out); // replayed while waiting: once
    const snap = a.snapshot();
    expect(snap.crash.waiting).toHaveLength(1);
    const rule = new CrashLoopRule(1, 60_000, () => undefined, 0);
    rule.restore(snap.crash);
    rule.settle(out, Date.now());
    expect(out).toHaveLength(1);
    expect(out[0]?.details.workload).toBe('container/n1/c0');
  });

  it('wait in a bounded list: past it, an exit counts at once by container id', () => {
    const rule = new CrashLoopRule(3, 60_000, () => undefined, 30_000, 2);
    const out: Alert[] = [];
    for (let i = 0; i < 3; i++) rule.observe(exitRow(skeleton(i), i), out);
    expect(rule.snapshot().waiting.map((w) => w.container)).toEqual(['c0', 'c1']);
    expect(rule.snapshot().windows.map((w) => w.workload)).toEqual(['container/n1/c2']);
  });
});

describe('alert state keeper', () => {
  it('saves with the cut (sequences through the cut only) and restores on the next owner', async () => {
    const store = new FakeStore();
    const a = new AlertEngine(rules);
    const out: Alert[] = [];
    a.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 1n, producedAtNs: NOW_NS, checksum: 0, offset: 1n },
      out,
    );
    a.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 2n, producedAtNs: NOW_NS, checksum: 0, offset: 2n },
      out,
    );
    a.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 3n, producedAtNs: NOW_NS, checksum: 0, offset: 3n },
      out,
    ); // consumed into the next, open batch
    a.observe('proc_exit', exitRow(recreated(0), 0), out);
    a.observe('proc_exit', exitRow(recreated(1), 1), out);
    await keeper(store).save(
      0,
      a,
      cutOf(10n, 11n, { event_batches: [envelope('n1', 1), envelope('n1', 2)] }),
      () => true,
    );
    expect(store.rows).toHaveLength(1);
    expect(store.rows[0]).toMatchObject({ throughOffset: 11n, token: 'alert_state:events:0:10-11' });
    expect(decodeState(store.rows[0]?.state ?? '').sequences).toEqual([
      expect.objectContaining({ node: 'n1', bootId: 'boot-1', sequence: '2' }),
    ]);

    const b = new AlertEngine(rules);
    await keeper(store).restore(0, b, { offset: '12', metadata: null }, () => true);
    b.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 3n, producedAtNs: NOW_NS, checksum: 0, offset: 3n },
      out,
    ); // the batch the dead owner never committed
    b.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 5n, producedAtNs: NOW_NS, checksum: 0, offset: 5n },
      out,
    );
    b.observe('proc_exit', exitRow(recreated(2), 2), out);
    expect(out.map((x) => [x.kind, x.details.missing ?? x.details.exits])).toEqual([
      ['data_loss', '1'],
      ['crash_loop', '3'],
    ]);
  });

  it('accepts a state saved past the commit within the recorded cut; ignores one beyond it', async () => {
    const store = new FakeStore();
    const a = new AlertEngine(rules);
    const out: Alert[] = [];
    for (let i = 0; i < 2; i++) a.observe('proc_exit', exitRow(recreated(i), i), out);
    await keeper(store).save(0, a, cutOf(20n, 29n), () => true);
    // Died after the save, before committing 30: offset 20 is committed with its cut recorded.
    const b = new AlertEngine(rules);
    await keeper(store).restore(0, b, { offset: '20', metadata: encodeCut(29n) }, () => true);
    expect(b.snapshot().crash.windows).toHaveLength(1);
    // Offsets that never held this state (a recreated topic): not taken.
    const c = new AlertEngine(rules);
    await keeper(store).restore(0, c, { offset: '5', metadata: null }, () => true);
    expect(c.snapshot().crash.windows).toHaveLength(0);
  });

  it('a stale state keeps the windows and drops the sequences (no false data_loss), counted', async () => {
    const store = new FakeStore();
    const failures = { n: 0 };
    const a = new AlertEngine(rules);
    const out: Alert[] = [];
    a.observe('proc_exit', exitRow(recreated(0), 0), out);
    await keeper(store).save(0, a, cutOf(0n, 9n, { event_batches: [envelope('n1', 4)] }), () => true);
    const b = new AlertEngine(rules);
    await keeper(store, failures).restore(0, b, { offset: '50', metadata: null }, () => true);
    b.observeSequence(
      { node: 'n1', bootId: 'boot-1', sequence: 40n, producedAtNs: NOW_NS, checksum: 0, offset: 40n },
      out,
    ); // batches 5..39 were committed unseen here
    expect(out).toHaveLength(0);
    expect(b.snapshot().crash.windows).toHaveLength(1);
    expect(failures.n).toBe(1);
  });

  it('retries a failing store, then gives up and counts: restore starts empty, save is skipped', async () => {
    const store = new FakeStore();
    const failures = { n: 0 };
    store.failSaves = 1;
    const a = new AlertEngine(rules);
    await keeper(store, failures).save(0, a, cutOf(0n, 0n), () => true);
    expect(store.rows).toHaveLength(1); // the second attempt landed
    store.failSaves = 99;
    await keeper(store, failures).save(0, a, cutOf(1n, 1n), () => true);
    expect(store.rows).toHaveLength(1);
    expect(failures.n).toBe(1);
    store.failLoads = 99;
    const started = Date.now();
    await keeper(store, failures).restore(0, new AlertEngine(rules), { offset: '1' }, () => true);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(failures.n).toBe(2);
    // Not saved at all once the partition is gone.
    store.failSaves = 0;
    await keeper(store, failures).save(0, a, cutOf(2n, 2n), () => false);
    expect(store.rows).toHaveLength(1);
  });
});
