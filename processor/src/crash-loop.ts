// The crash-loop rule: `exits` non-zero exits of one workload within `windowMs` of event
// time raise one alert; those exits are then spent (one alert per N exits, not one per exit
// after the Nth). Keyed by workload identity (workload.ts), not container id: a crash loop
// makes a new container id on every restart (DESIGN.md pitfall 15).
//
// Which workload an exit belongs to is decided when the rule runs (after the batch's join),
// from the newest record that names the exit's container: the collector's first record of
// a new cgroup often knows only its path, and a container that dies at start-up is gone
// before Docker's inspect or the kubelet's status names it. An exit of a container no record
// names yet waits, at most nameWaitMs of processing time, and is retried with every batch;
// then it counts under the identity its own join gives (its container id).
//
// Idempotent on replay: an exit is counted once by its identity (node, boot, ts_ns, tgid),
// and exits up to the one that raised an alert never count again, so a batch replayed onto
// a restored state that already holds it raises nothing twice.
import type { Alert } from './alerts.js';
import type { ContainerMeta } from './metadata-table.js';
import type { EventRow } from './partition-batch.js';
import { rowWorkload, workloadIdentity } from './workload.js';

/** The newest record naming a cgroup's container (MetadataTable.named). */
export type NamedLookup = (node: string, cgroupId: bigint) => ContainerMeta | undefined;

/** Kubernetes reports a container a second or more after it started; Docker in milliseconds. */
export const NAME_WAIT_MS = 30_000;
/**
 * Exits waiting for a name at most: past it (a runtime no provider describes, with many
 * failing processes) an exit counts at once under its container id. The waiting exits are
 * in every saved snapshot, so this bounds its size too.
 */
export const MAX_WAITING = 10_000;

/** One non-zero exit, as much of its row as the rule and its alert need. */
interface ExitFact {
  id: string;
  timeNs: bigint;
  node: string;
  cgroupId: bigint;
  container: string;
  containerName: string;
  namespace: string;
  pod: string;
  exitCode: string;
  signal: string;
  /** The identity from the row's own join: used when no record names the container in time. */
  fallback: string;
  /** Processing time it began to wait for a name. */
  waitingSinceMs: number;
}

interface Exit {
  id: string;
  timeNs: bigint;
  container: string;
}

interface CrashWindow {
  /** Sorted by time. */
  exits: Exit[];
  /** Time of the newest exit of the last alert: exits up to it are spent. */
  alertedAtNs: bigint;
}

/** JSON-able state (u64 as decimal text). */
export interface CrashLoopSnapshot {
  windows: {
    workload: string;
    alertedAtNs: string;
    exits: { id: string; timeNs: string; container: string }[];
  }[];
  waiting: (Omit<ExitFact, 'timeNs' | 'cgroupId'> & { timeNs: string; cgroupId: string })[];
}

const MS = 1_000_000n;

export class CrashLoopRule {
  private windows = new Map<string, CrashWindow>();
  private waiting = new Map<string, ExitFact>();
  private readonly windowNs: bigint;
  /** Newest exit time seen: windows are forgotten by event time, not by the clock. */
  private maxEventNs = 0n;

  constructor(
    private readonly exits: number,
    private readonly windowMs: number,
    private readonly named: NamedLookup | undefined,
    private readonly nameWaitMs = NAME_WAIT_MS,
    private readonly maxWaiting = MAX_WAITING,
  ) {
    this.windowNs = BigInt(windowMs) * MS;
  }

  observe(eventRow: EventRow, out: Alert[]): void {
    const row = eventRow.columns;
    if (Number(row.exit_code ?? 0) === 0 && Number(row.signal ?? 0) === 0) return;
    const joined = eventRow.meta;
    const fallback = rowWorkload(eventRow);
    if (fallback === '') return; // not joined to a container (pending or host)
    const t = eventRow.timeNs;
    if (t > this.maxEventNs) this.maxEventNs = t;
    const fact: ExitFact = {
      id: `${String(row.node)}/${String(row.boot_id ?? '')}/${String(row.ts_ns ?? t)}/${String(row.tgid ?? '')}`,
      timeNs: t,
      node: String(row.node ?? ''),
      cgroupId: joined?.cgroupId ?? 0n,
      container: String(row.container_id ?? ''),
      containerName: String(row.container_name ?? ''),
      namespace: String(row.namespace ?? ''),
      pod: String(row.pod ?? ''),
      exitCode: String(row.exit_code ?? ''),
      signal: String(row.signal ?? ''),
      fallback,
      waitingSinceMs: Date.now(),
    };
    const meta = joined === undefined ? undefined : this.nameOf(joined);
    if (meta !== undefined) this.count(workloadIdentity(meta), fact, meta, out);
    else if (joined === undefined || this.named === undefined) this.count(fallback, fact, undefined, out);
    else if (this.waiting.size >= this.maxWaiting) this.count(fallback, fact, undefined, out);
    else this.waiting.set(fact.id, fact);
  }

  /** Exits waiting for a name: counted once a record names them, or after nameWaitMs. */
  settle(out: Alert[], nowMs: number): void {
    if (this.waiting.size === 0 || this.named === undefined) return;
    for (const [id, f] of this.waiting) {
      const meta = this.named(f.node, f.cgroupId);
      if (meta !== undefined) this.count(workloadIdentity(meta), f, meta, out);
      else if (nowMs - f.waitingSinceMs >= this.nameWaitMs) this.count(f.fallback, f, undefined, out);
      else continue;
      this.waiting.delete(id);
    }
  }

  snapshot(): CrashLoopSnapshot {
    // Two windows, not one: a replayed batch can span more event time than a window.
    for (const [key, w] of this.windows) {
      const newest = w.exits.at(-1)?.timeNs ?? 0n;
      const last = newest > w.alertedAtNs ? newest : w.alertedAtNs;
      if (this.maxEventNs - last > 2n * this.windowNs) this.windows.delete(key);
    }
    const windows: CrashLoopSnapshot['windows'] = [];
    for (const [workload, w] of this.windows)
      windows.push({
        workload,
        alertedAtNs: String(w.alertedAtNs),
        exits: w.exits.map((e) => ({ id: e.id, timeNs: String(e.timeNs), container: e.container })),
      });
    const waiting = [...this.waiting.values()].map((f) => ({
      ...f,
      timeNs: String(f.timeNs),
      cgroupId: String(f.cgroupId),
    }));
    return { windows, waiting };
  }

  restore(s: CrashLoopSnapshot): void {
    for (const c of s.windows) {
      const exits = c.exits.map((e) => ({ id: e.id, timeNs: BigInt(e.timeNs), container: e.container }));
      this.windows.set(c.workload, { exits, alertedAtNs: BigInt(c.alertedAtNs) });
      for (const e of exits) if (e.timeNs > this.maxEventNs) this.maxEventNs = e.timeNs;
    }
    for (const f of s.waiting)
      this.waiting.set(f.id, { ...f, timeNs: BigInt(f.timeNs), cgroupId: BigInt(f.cgroupId) });
  }

  private nameOf(joined: ContainerMeta): ContainerMeta | undefined {
    return this.named?.(joined.node, joined.cgroupId) ?? (joined.name !== '' ? joined : undefined);
  }

  private count(workload: string, f: ExitFact, meta: ContainerMeta | undefined, out: Alert[]): void {
    let w = this.windows.get(workload);
    if (w === undefined) {
      w = { exits: [], alertedAtNs: 0n };
      this.windows.set(workload, w);
    }
    if (f.timeNs <= w.alertedAtNs) return; // spent in an alert already (a replayed batch)
    if (w.exits.some((e) => e.id === f.id)) return; // counted already (a replayed batch)
    const exits = w.exits;
    let i = exits.length;
    while (i > 0 && (exits[i - 1] as Exit).timeNs > f.timeNs) i--;
    exits.splice(i, 0, { id: f.id, timeNs: f.timeNs, container: f.container });
    const newest = (exits.at(-1) as Exit).timeNs;
    while (exits.length > 0 && newest - (exits[0] as Exit).timeNs > this.windowNs) exits.shift();
    if (exits.length < this.exits) return;
    out.push({
      kind: 'crash_loop',
      node: f.node,
      container: f.container,
      containerName: meta?.name ?? f.containerName,
      namespace: meta?.namespace ?? f.namespace,
      pod: meta?.pod ?? f.pod,
      timeNs: f.timeNs,
      details: {
        exits: String(exits.length),
        windowMs: String(this.windowMs),
        lastExitCode: f.exitCode,
        lastSignal: f.signal,
        workload,
        containers: String(new Set(exits.map((e) => e.container)).size),
        firstExitNs: String((exits[0] as Exit).timeNs),
      },
    });
    w.exits = [];
    w.alertedAtNs = newest;
  }
}
