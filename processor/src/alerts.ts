// Built-in alert rules, evaluated over each batch after its join is final (so an alert
// names the container even when its metadata came late). Windows use event time, not
// processing time, so a backlog replays into the same alerts. Delivery is at-least-once:
// a batch rebuilt after a crash can raise its alerts again; consumers key on
// (kind, node, container, time).
//
// The rules' state survives a rebalance and a restart: alert-state.ts saves a snapshot
// with every committed batch and the partition's next owner restores it. The crash-loop
// rule (crash-loop.ts) follows workloads, not container ids, and is idempotent on replay.
import type * as Avro from '../../schemas/types.js';
import { CrashLoopRule, type CrashLoopSnapshot, type NamedLookup } from './crash-loop.js';
import type { EventRow, Row } from './partition-batch.js';
import {
  type EnvelopeSeen,
  SequenceMarks,
  type SequenceSnapshotEntry,
  type SequenceVerdict,
} from './sequence-marks.js';

/** The schema's Alert (schemas/Alert.avsc), its kind one of the built-in rules'. */
export type Alert = Omit<Avro.Alert, 'kind'> & {
  kind: 'oom_kill' | 'crash_loop' | 'tcp_spike' | 'data_loss' | 'output_skipped';
};

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

/** The rules' state as JSON-able values (u64 as decimal text): what alert-state.ts stores. */
export interface AlertSnapshot {
  crash: CrashLoopSnapshot;
  tcp: { key: string; windowStartNs: string; retransmits: number; resets: number; fired: boolean }[];
  sequences: SequenceSnapshotEntry[];
}

const MS = 1_000_000n;
/** A (node, boot) not heard from for this long (producer time) is forgotten. */
const SEQUENCE_RETENTION_NS = 7n * 86_400_000n * MS;
const SEP = '\u0000';
/** The kinds observe() has a rule for. */
const OBSERVED_KINDS = new Set(['oom_kill', 'proc_exit', 'tcp_close', 'tcp_reset']);

export class AlertEngine {
  private readonly crash: CrashLoopRule;
  /** Set with each committed cut: the next batch's rules first retry exits waiting for a name. */
  private settleDue = false;
  private tcp = new Map<string, TcpWindow>();
  /** Envelope marks per node and boot: gaps and duplicates are found here, before the cut. */
  private readonly sequences = new SequenceMarks();
  private readonly tcpWindowNs: bigint;
  /** Newest tcp event time and producer time seen: state is forgotten by them, not the clock. */
  private maxTcpNs = 0n;
  private maxProducedNs = 0n;

  /** `named`: the partition's metadata (MetadataTable.named), so an exit finds its workload late. */
  constructor(
    private readonly rules: AlertRules,
    named?: NamedLookup,
  ) {
    this.crash = new CrashLoopRule(rules.crashLoopExits, rules.crashLoopWindowMs, named);
    this.tcpWindowNs = BigInt(rules.tcpSpikeWindowMs) * MS;
  }

  /** Whether rows of this kind (table name = event kind) can raise an alert: the others need not be read. */
  static observes(kind: string): boolean {
    return OBSERVED_KINDS.has(kind);
  }

  /** Before a batch's rows: exits that waited for a name since the last committed cut are retried. */
  beginBatch(out: Alert[]): void {
    if (!this.settleDue) return;
    this.settleDue = false;
    this.crash.settle(out, Date.now());
  }

  /** Checks one event row (table name = event kind); pushes alerts it raises into `out`. */
  observe(kind: string, row: EventRow, out: Alert[]): void {
    const c = row.columns;
    this.beginBatch(out);
    switch (kind) {
      case 'oom_kill':
        if (this.rules.oomKill)
          out.push(
            alertFor('oom_kill', row, {
              victimPid: String(c.victim_pid ?? ''),
              comm: String(c.comm ?? ''),
              anonRssKb: String(c.anon_rss_kb ?? ''),
            }),
          );
        return;
      case 'proc_exit':
        this.crash.observe(row, out);
        return;
      case 'tcp_close':
        this.observeTcp(row, Number(c.retransmits ?? 0), Number(c.resets ?? 0), out);
        return;
      case 'tcp_reset':
        this.observeTcp(row, 0, 1, out);
        return;
      default:
        return;
    }
  }

  /**
   * One message's envelope: a duplicate (Kafka holds it twice, see sequence-marks.ts) is
   * only reported; otherwise a jump in its node's sequence means the collector lost data.
   */
  observeSequence(e: EnvelopeSeen, out: Alert[]): SequenceVerdict {
    if (e.producedAtNs > this.maxProducedNs) this.maxProducedNs = e.producedAtNs;
    const verdict = this.sequences.observe(e);
    if (verdict.duplicate || !this.rules.sequenceGap) return verdict;
    const last = verdict.previous;
    if (last !== undefined && e.sequence > last + 1n) {
      out.push({
        kind: 'data_loss',
        node: e.node,
        container: '',
        containerName: '',
        namespace: '',
        pod: '',
        timeNs: e.producedAtNs,
        details: {
          bootId: e.bootId,
          after: String(last),
          next: String(e.sequence),
          missing: String(e.sequence - last - 1n),
        },
      });
    }
    return verdict;
  }

  /**
   * A committed cut's event_batches rows: the sequences a snapshot may claim as seen.
   * Consumption runs ahead of the cut being written, so the live marks can hold sequences of
   * batches no one committed yet; restoring those would hide a gap in them.
   */
  commitSequences(envelopes: readonly Row[]): void {
    this.settleDue = true;
    this.sequences.commit(envelopes, this.maxProducedNs);
  }

  /** The state a new owner needs, after dropping what no rule can use any more (by event time). */
  snapshot(): AlertSnapshot {
    for (const [key, w] of this.tcp)
      if (this.maxTcpNs - w.windowStartNs > 2n * this.tcpWindowNs) this.tcp.delete(key);
    const tcp: AlertSnapshot['tcp'] = [];
    for (const [key, w] of this.tcp) tcp.push({ key, ...w, windowStartNs: String(w.windowStartNs) });
    const sequences = this.sequences.snapshot(this.maxProducedNs - SEQUENCE_RETENTION_NS);
    return { crash: this.crash.snapshot(), tcp, sequences };
  }

  /**
   * Takes over a snapshot (the engine is new, before any event of the partition). Without
   * `sequences` (a snapshot older than the committed offset) no gap is raised until each
   * node's next batch sets a new baseline: the batches in between were never checked here.
   */
  restore(s: AlertSnapshot, options: { sequences: boolean }): void {
    this.crash.restore(s.crash);
    this.settleDue = true; // exits that waited for a name under the last owner
    for (const t of s.tcp) {
      const windowStartNs = BigInt(t.windowStartNs);
      this.tcp.set(t.key, { windowStartNs, retransmits: t.retransmits, resets: t.resets, fired: t.fired });
      if (windowStartNs > this.maxTcpNs) this.maxTcpNs = windowStartNs;
    }
    if (!options.sequences) return;
    const newest = this.sequences.restore(s.sequences);
    if (newest > this.maxProducedNs) this.maxProducedNs = newest;
  }

  private observeTcp(row: EventRow, retransmits: number, resets: number, out: Alert[]): void {
    const container = row.columns.container_id;
    if (typeof container !== 'string' || container === '' || retransmits + resets === 0) return;
    const t = row.timeNs;
    if (t > this.maxTcpNs) this.maxTcpNs = t;
    const key = `${row.columns.node}${SEP}${container}`;
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

function alertFor(kind: Alert['kind'], row: EventRow, details: Record<string, string>): Alert {
  const c = row.columns;
  return {
    kind,
    node: String(c.node ?? ''),
    container: String(c.container_id ?? ''),
    containerName: String(c.container_name ?? ''),
    namespace: String(c.namespace ?? ''),
    pod: String(c.pod ?? ''),
    timeNs: row.timeNs,
    details,
  };
}
