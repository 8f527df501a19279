// Built-in alert rules, evaluated over each batch after its join is final (so an alert
// names the container even when its metadata came late). Windows use event time, not
// processing time, so a backlog replays into the same alerts. Delivery is at-least-once:
// a batch rebuilt after a crash can raise its alerts again; consumers key on
// (kind, node, container, time).
//
// The rules' state survives a rebalance and a restart (alert-state.ts saves a snapshot
// with every committed batch, the partition's next owner restores it), and the crash-loop
// rule is idempotent on replay: an exit is counted once by its identity (node, boot,
// ts_ns, tgid), and exits up to the one that raised an alert never count again, so a
// batch replayed onto a state that already holds it raises nothing twice.
import type { Row } from './partition-batch.js';
import { TIME_NS } from './rows.js';
import { rowWorkload } from './workload.js';

export interface Alert {
  kind: 'oom_kill' | 'crash_loop' | 'tcp_spike' | 'data_loss' | 'output_skipped';
  node: string;
  container: string;
  containerName: string;
  namespace: string;
  pod: string;
  /** Wall-clock ns of the event that raised it. */
  timeNs: bigint;
  details: Record<string, string>;
}

export interface AlertRules {
  oomKill: boolean;
  crashLoopExits: number;
  crashLoopWindowMs: number;
  tcpSpikeThreshold: number;
  tcpSpikeWindowMs: number;
  sequenceGap: boolean;
}

interface TcpWindow {
  windowStartNs: bigint;
  retransmits: number;
  resets: number;
  fired: boolean;
}

interface Exit {
  id: string;
  timeNs: bigint;
  container: string;
}

/** One workload's non-zero exits within the window, and where its last alert was. */
interface CrashWindow {
  /** Sorted by time. */
  exits: Exit[];
  /** Time of the exit that raised the last crash_loop alert: exits up to it are spent. */
  alertedAtNs: bigint;
}

interface SequenceMark {
  sequence: bigint;
  /** producedAtNs of the newest batch seen (pruning). */
  seenAtNs: bigint;
}

/** The rules' state as JSON-able values (u64 as decimal text): what alert-state.ts stores. */
export interface AlertSnapshot {
  crash: {
    workload: string;
    alertedAtNs: string;
    exits: { id: string; timeNs: string; container: string }[];
  }[];
  tcp: { key: string; windowStartNs: string; retransmits: number; resets: number; fired: boolean }[];
  sequences: { node: string; bootId: string; sequence: string; seenAtNs: string }[];
}

const MS = 1_000_000n;
/** A (node, boot) not heard from for this long (producer time) is forgotten. */
const SEQUENCE_RETENTION_NS = 7n * 86_400_000n * MS;
const SEP = '\u0000';

export class AlertEngine {
  private crash = new Map<string, CrashWindow>();
  private tcp = new Map<string, TcpWindow>();
  /** Last sequence per node and boot, as consumed (gaps are found here, before the cut). */
  private lastSequence = new Map<string, bigint>();
  /** Last sequence per node and boot through the last committed cut: what a snapshot holds. */
  private committedSequence = new Map<string, SequenceMark>();
  private readonly crashWindowNs: bigint;
  private readonly tcpWindowNs: bigint;
  /** Newest event time and producer time seen: pruning follows event time, not the clock. */
  private maxEventNs = 0n;
  private maxProducedNs = 0n;

  constructor(private readonly rules: AlertRules) {
    this.crashWindowNs = BigInt(rules.crashLoopWindowMs) * MS;
    this.tcpWindowNs = BigInt(rules.tcpSpikeWindowMs) * MS;
  }

  /** Checks one event row (table name = event kind); pushes alerts it raises into `out`. */
  observe(kind: string, row: Row, out: Alert[]): void {
    switch (kind) {
      case 'oom_kill':
        if (this.rules.oomKill)
          out.push(
            alertFor('oom_kill', row, {
              victimPid: String(row.victim_pid ?? ''),
              comm: String(row.comm ?? ''),
              anonRssKb: String(row.anon_rss_kb ?? ''),
            }),
          );
        return;
      case 'proc_exit':
        this.observeExit(row, out);
        return;
      case 'tcp_close':
        this.observeTcp(row, Number(row.retransmits ?? 0), Number(row.resets ?? 0), out);
        return;
      case 'tcp_reset':
        this.observeTcp(row, 0, 1, out);
        return;
      default:
        return;
    }
  }

  /** Per-node sequence numbers from the batch envelope: a jump means the collector lost data. */
  observeSequence(node: string, bootId: string, sequence: bigint, timeNs: bigint, out: Alert[]): void {
    if (timeNs > this.maxProducedNs) this.maxProducedNs = timeNs;
    if (!this.rules.sequenceGap) return;
    const key = `${node}${SEP}${bootId}`;
    const last = this.lastSequence.get(key);
    if (last === undefined || sequence > last) this.lastSequence.set(key, sequence);
    if (last !== undefined && sequence > last + 1n) {
      out.push({
        kind: 'data_loss',
        node,
        container: '',
        containerName: '',
        namespace: '',
        pod: '',
        timeNs,
        details: {
          bootId,
          after: String(last),
          next: String(sequence),
          missing: String(sequence - last - 1n),
        },
      });
    }
  }

  /**
   * A committed cut's event_batches rows: the sequences a snapshot may claim as seen.
   * Consumption runs ahead of the cut being written, so the live map can hold sequences of
   * batches no one committed yet; restoring those would hide a gap in them.
   */
  commitSequences(envelopes: readonly Row[]): void {
    for (const row of envelopes) {
      const key = `${String(row.node)}${SEP}${String(row.boot_id)}`;
      const sequence = BigInt(row.sequence as string | number);
      const mark = this.committedSequence.get(key);
      if (mark === undefined || sequence > mark.sequence)
        this.committedSequence.set(key, { sequence, seenAtNs: this.maxProducedNs });
      else mark.seenAtNs = this.maxProducedNs;
    }
  }

  /** The state a new owner needs, after dropping what no rule can use any more (by event time). */
  snapshot(): AlertSnapshot {
    this.prune();
    const crash: AlertSnapshot['crash'] = [];
    for (const [workload, w] of this.crash)
      crash.push({
        workload,
        alertedAtNs: String(w.alertedAtNs),
        exits: w.exits.map((e) => ({ id: e.id, timeNs: String(e.timeNs), container: e.container })),
      });
    const tcp: AlertSnapshot['tcp'] = [];
    for (const [key, w] of this.tcp) tcp.push({ key, ...w, windowStartNs: String(w.windowStartNs) });
    const sequences: AlertSnapshot['sequences'] = [];
    for (const [key, m] of this.committedSequence) {
      const [node = '', bootId = ''] = key.split(SEP);
      sequences.push({ node, bootId, sequence: String(m.sequence), seenAtNs: String(m.seenAtNs) });
    }
    return { crash, tcp, sequences };
  }

  /**
   * Takes over a snapshot (the engine is new, before any event of the partition). Without
   * `sequences` (a snapshot older than the committed offset) no gap is raised until each
   * node's next batch sets a new baseline: the batches in between were never checked here.
   */
  restore(s: AlertSnapshot, options: { sequences: boolean }): void {
    for (const c of s.crash) {
      const exits = c.exits.map((e) => ({ id: e.id, timeNs: BigInt(e.timeNs), container: e.container }));
      this.crash.set(c.workload, { exits, alertedAtNs: BigInt(c.alertedAtNs) });
      for (const e of exits) if (e.timeNs > this.maxEventNs) this.maxEventNs = e.timeNs;
    }
    for (const t of s.tcp)
      this.tcp.set(t.key, {
        windowStartNs: BigInt(t.windowStartNs),
        retransmits: t.retransmits,
        resets: t.resets,
        fired: t.fired,
      });
    if (!options.sequences) return;
    for (const q of s.sequences) {
      const key = `${q.node}${SEP}${q.bootId}`;
      const mark = { sequence: BigInt(q.sequence), seenAtNs: BigInt(q.seenAtNs) };
      this.committedSequence.set(key, mark);
      this.lastSequence.set(key, mark.sequence);
      if (mark.seenAtNs > this.maxProducedNs) this.maxProducedNs = mark.seenAtNs;
    }
  }

  /** Two windows, not one: a replayed batch can span more event time than a window. */
  private prune(): void {
    for (const [key, w] of this.crash) {
      const newest = w.exits.at(-1)?.timeNs ?? 0n;
      const last = newest > w.alertedAtNs ? newest : w.alertedAtNs;
      if (this.maxEventNs - last > 2n * this.crashWindowNs) this.crash.delete(key);
    }
    for (const [key, w] of this.tcp)
      if (this.maxEventNs - w.windowStartNs > 2n * this.tcpWindowNs) this.tcp.delete(key);
    for (const [key, m] of this.committedSequence)
      if (this.maxProducedNs - m.seenAtNs > SEQUENCE_RETENTION_NS) {
        this.committedSequence.delete(key);
        this.lastSequence.delete(key);
      }
  }

  private observeExit(row: Row, out: Alert[]): void {
    if (Number(row.exit_code ?? 0) === 0 && Number(row.signal ?? 0) === 0) return;
    const workload = rowWorkload(row);
    if (workload === '') return;
    const t = row[TIME_NS] as bigint;
    if (t > this.maxEventNs) this.maxEventNs = t;
    let w = this.crash.get(workload);
    if (w === undefined) {
      w = { exits: [], alertedAtNs: 0n };
      this.crash.set(workload, w);
    }
    if (t <= w.alertedAtNs) return; // counted in an alert already (a replayed batch)
    const id = exitId(row, t);
    if (w.exits.some((e) => e.id === id)) return; // counted already (a replayed batch)
    const exits = w.exits;
    let i = exits.length;
    while (i > 0 && (exits[i - 1] as Exit).timeNs > t) i--;
    exits.splice(i, 0, { id, timeNs: t, container: String(row.container_id ?? '') });
    const newest = (exits.at(-1) as Exit).timeNs;
    while (exits.length > 0 && newest - (exits[0] as Exit).timeNs > this.crashWindowNs) exits.shift();
    if (exits.length < this.rules.crashLoopExits) return;
    out.push(
      alertFor('crash_loop', row, {
        exits: String(exits.length),
        windowMs: String(this.rules.crashLoopWindowMs),
        lastExitCode: String(row.exit_code ?? ''),
        lastSignal: String(row.signal ?? ''),
        workload,
        containers: String(new Set(exits.map((e) => e.container)).size),
        firstExitNs: String((exits[0] as Exit).timeNs),
      }),
    );
    // One alert per N exits, not one per exit after the Nth; the exits are spent.
    w.exits = [];
    w.alertedAtNs = newest;
  }

  private observeTcp(row: Row, retransmits: number, resets: number, out: Alert[]): void {
    const container = row.container_id;
    if (typeof container !== 'string' || container === '' || retransmits + resets === 0) return;
    const t = row[TIME_NS] as bigint;
    if (t > this.maxEventNs) this.maxEventNs = t;
    const key = `${row.node}${SEP}${container}`;
    const start = t - (t % this.tcpWindowNs); // tumbling windows by event time
    let w = this.tcp.get(key);
    if (w === undefined || w.windowStartNs !== start) {
      w = { windowStartNs: start, retransmits: 0, resets: 0, fired: false };
      this.tcp.set(key, w);
    }
    w.retransmits += retransmits;
    w.resets += resets;
    if (!w.fired && w.retransmits + w.resets >= this.rules.tcpSpikeThreshold) {
      w.fired = true;
      out.push(
        alertFor('tcp_spike', row, {
          retransmits: String(w.retransmits),
          resets: String(w.resets),
          windowMs: String(this.rules.tcpSpikeWindowMs),
        }),
      );
    }
  }
}

/** An exit's identity: the kernel's boot-time stamp on its node and boot, and its process. */
function exitId(row: Row, timeNs: bigint): string {
  return `${String(row.node)}/${String(row.boot_id ?? '')}/${String(row.ts_ns ?? timeNs)}/${String(row.tgid ?? '')}`;
}

function alertFor(kind: Alert['kind'], row: Row, details: Record<string, string>): Alert {
  return {
    kind,
    node: String(row.node ?? ''),
    container: String(row.container_id ?? ''),
    containerName: String(row.container_name ?? ''),
    namespace: String(row.namespace ?? ''),
    pod: String(row.pod ?? ''),
    timeNs: row[TIME_NS] as bigint,
    details,
  };
}
