// Built-in alert rules, evaluated over each batch after its join is final (so an alert
// names the container even when its metadata came late). Windows use event time, not
// processing time, so a backlog replays into the same alerts. Delivery is at-least-once:
// a batch rebuilt after a crash can raise its alerts again; consumers key on
// (kind, node, container, time).
import type { Row } from './partition-batch.js';
import { TIME_NS } from './rows.js';

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

const MS = 1_000_000n;

export class AlertEngine {
  private readonly exits = new Map<string, bigint[]>();
  private readonly tcp = new Map<string, TcpWindow>();
  private readonly lastSequence = new Map<string, bigint>();
  private readonly crashWindowNs: bigint;
  private readonly tcpWindowNs: bigint;

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
    if (!this.rules.sequenceGap) return;
    const key = `${node}\u0000${bootId}`;
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

  private observeExit(row: Row, out: Alert[]): void {
    const container = row.container_id;
    if (typeof container !== 'string' || container === '') return;
    if (Number(row.exit_code ?? 0) === 0 && Number(row.signal ?? 0) === 0) return;
    const t = row[TIME_NS] as bigint;
    const key = `${row.node}\u0000${container}`;
    const times = (this.exits.get(key) ?? []).filter((x) => t - x <= this.crashWindowNs);
    times.push(t);
    if (times.length >= this.rules.crashLoopExits) {
      out.push(
        alertFor('crash_loop', row, {
          exits: String(times.length),
          windowMs: String(this.rules.crashLoopWindowMs),
          lastExitCode: String(row.exit_code ?? ''),
          lastSignal: String(row.signal ?? ''),
        }),
      );
      this.exits.delete(key); // one alert per N exits, not one per exit after the Nth
    } else {
      this.exits.set(key, times);
    }
  }

  private observeTcp(row: Row, retransmits: number, resets: number, out: Alert[]): void {
    const container = row.container_id;
    if (typeof container !== 'string' || container === '' || retransmits + resets === 0) return;
    const t = row[TIME_NS] as bigint;
    const key = `${row.node}\u0000${container}`;
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
