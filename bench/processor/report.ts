// The "Processor" section of docs/benchmarks.md from one run's figures (run.ts measures them).
import { loadavg } from 'node:os';
import { table, writeSection } from '../report.js';
import { limitedDrainRows, MEMORY_TARGET_BYTES, readLimitedDrain } from './memory-limit.js';

type Threads = ReadonlyArray<[string, number]>;
const f = (n: number) => Math.round(n).toLocaleString('en-US');
interface Latency {
  achievedRate: number;
  p50: number;
  p99: number;
  landed: number;
  expected: number;
}

/** One run's settings and figures, named as run.ts names them. */
export interface ProcessorReport {
  BATCH_MS: number;
  CUT_ROWS: number;
  DEFAULTS: { batchSmallRows: number; batchSmallMaxMs: number; batchTrickleMaxMs: number };
  ENRICHED: boolean;
  EVENT_TABLES: readonly string[];
  EXIT_SHARE: number;
  NODES: number;
  OWN_BASELINE: number;
  PARTITIONS: number;
  PENDING_MAX_ROWS: number;
  PER_MESSAGE: number;
  RATE: number;
  TRICKLE_ROWS: number;
  IDLE_S: number;
  own: { perCpuS: number; perMainCpuS: number; threads: Threads };
  trickleRun: {
    rate: number;
    cpuPct: number;
    insertsPerS: number;
    msPerInsert: number;
    p50: number;
    p99: number;
    byThread: Threads;
    idle: { cpuPct: number; byThread: Threads };
  };
  produced: number;
  wallS: number;
  cpuS: number;
  mainCpuS: number;
  tputWall: number;
  tputCpu: number;
  byThread: Threads;
  drainInserts: { ms: number; calls: number };
  drainStatements: number;
  insertRowsPerS: number;
  drainPeakRss: number;
  /** Peak RSS of the drains after the first (the same store, after the limit's inserts). */
  laterDrainPeaks: readonly number[];
  drainPeakResident: { anon: number; file: number; heap: number };
  peakRss: number;
  limitRate: number;
  limitPerCpuS: number;
  /** processor / limit of each round of drain then limit (the median round's figures are the others). */
  ratios: readonly number[];
  limitInserts: number;
  limitCutCount: number;
  limitByThread: Threads;
  latHigh: Latency;
  latLow: Latency;
  disk: { events: number; perEvent: number };
  /** The filesystem of the chDB store (bench/report.ts filesystemOf). */
  storeFilesystem: string;
}

export function writeProcessorReport(r: ProcessorReport): void {
  const ms = (v: number): string =>
    Number.isFinite(v) ? `${f(v)} ms` : 'not queryable within 30 s of the last produce (backlog)';
  writeSection(
    'Processor',
    'npm run bench processor',
    `${table(
      ['measure', 'value', 'target'],
      [
        ['Kafka -> processor -> chDB, events/s (wall, backlog drain)', f(r.tputWall), ''],
        [
          'Kafka -> processor -> chDB, events per CPU-second of the process',
          f(r.tputCpu),
          `>= 300,000 on one core: **${r.tputCpu >= 300_000 ? 'met' : 'missed'}**`,
        ],
        [
          '  of which the JavaScript main thread (decode, join, rows, Native encoding, kafkajs)',
          `${((100 * r.mainCpuS) / r.cpuS).toFixed(0)}% of the CPU: ${f(r.produced / r.mainCpuS)} events per CPU-second`,
          '',
        ],
        [
          "processor's own work (a store that builds the Native blocks and inserts nothing), events per CPU-second of its own threads",
          `${f(r.own.perCpuS)} (main thread ${f(r.own.perMainCpuS)})`,
          `>= 2 x ${f(r.OWN_BASELINE)} (BENCH_OWN_BASELINE): **${r.own.perCpuS >= 2 * r.OWN_BASELINE ? 'met' : 'missed'}**`,
        ],
        [
          '  own work: CPU by thread (s)',
          r.own.threads.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
          '',
        ],
        [
          '  backlog drain: CPU by thread (s)',
          r.byThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
          '',
        ],
        [`produce -> queryable latency p50 at ${f(r.latHigh.achievedRate)} events/s`, ms(r.latHigh.p50), ''],
        [
          `produce -> queryable latency p99 at ${f(r.latHigh.achievedRate)} events/s`,
          ms(r.latHigh.p99),
          `<= 500 ms: **${r.latHigh.p99 <= 500 && r.latHigh.achievedRate >= 0.95 * r.RATE ? 'met' : 'missed'}**`,
        ],
        [`produce -> queryable latency p50 at ${f(r.latLow.achievedRate)} events/s`, ms(r.latLow.p50), ''],
        [`produce -> queryable latency p99 at ${f(r.latLow.achievedRate)} events/s`, ms(r.latLow.p99), ''],
        [
          `CPU of the process at a trickle: ${f(r.trickleRun.rate)} events/s (${r.NODES} nodes, one message per second each)`,
          `${r.trickleRun.cpuPct.toFixed(1)}% of a core: ${r.trickleRun.insertsPerS.toFixed(1)} INSERT statements/s, ${r.trickleRun.msPerInsert.toFixed(0)} ms of CPU per statement`,
          `<= 5%: **${r.trickleRun.cpuPct <= 5 ? 'met' : 'missed'}**`,
        ],
        [
          '  CPU by thread at the trickle (s)',
          r.trickleRun.byThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
          '',
        ],
        [
          '  of which the process idle (started, no events): its fixed part',
          `${r.trickleRun.idle.cpuPct.toFixed(1)}% of a core: ${r.trickleRun.idle.byThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', ')} (s, over ${r.IDLE_S} s)`,
          '',
        ],
        [
          `produce -> queryable latency p50 / p99 at the trickle (batchTrickleMaxMs ${f(r.DEFAULTS.batchTrickleMaxMs)} ms, under ${f(r.TRICKLE_ROWS)} rows)`,
          `${ms(r.trickleRun.p50)} / ${ms(r.trickleRun.p99)}`,
          '',
        ],
        [
          'time the processor waited on chDB inserts during the backlog drain (summed over partitions)',
          `${(r.drainInserts.ms / 1000).toFixed(1)} s of ${r.wallS.toFixed(1)} s (${r.drainInserts.calls} inserts in ${r.drainStatements} statements, ${f(r.insertRowsPerS)} rows/s each)`,
          '',
        ],
        [
          'peak RSS of the process during the backlog drain, no memory limit (processor + chDB + the backlog producer)',
          `${f(r.drainPeakRss / 2 ** 20)} MiB: ${f(r.drainPeakResident.anon)} anonymous (V8's heap ${f(r.drainPeakResident.heap)}), ${f(r.drainPeakResident.file)} file-backed`,
          `<= 500 MiB: **${r.drainPeakRss <= 500 * 2 ** 20 ? 'met' : 'missed'}**`,
        ],
        [
          "  the drains of the later rounds (the same process and store, after the limit's inserts)",
          r.laterDrainPeaks.map((b) => `${f(b / 2 ** 20)} MiB`).join(', '),
          '',
        ],
        [
          '  over the whole run (also the latency runs, the in-memory rows of the limit run)',
          `${f(r.peakRss / 2 ** 20)} MiB`,
          '',
        ],
        ...limitedDrainRows(readLimitedDrain(process.env.BENCH_LIMITED_RESULT), r.cpuS / r.produced),
        [
          `bytes on disk per event after merges (${f(r.disk.events)} events with join columns filled, ${r.EVENT_TABLES.join(' + ')})`,
          r.disk.perEvent.toFixed(1),
          `<= 25: **${r.disk.perEvent <= 25 ? 'met' : 'missed'}**`,
        ],
        ['limit: chDB inserting the same rows from memory, rows/s (wall)', f(r.limitRate), ''],
        [
          'limit: chDB inserting the same rows from memory, rows per CPU-second',
          f(r.limitPerCpuS),
          `processor / limit = ${(r.tputCpu / r.limitPerCpuS).toFixed(2)} (the median of ${r.ratios.length} rounds: ${r.ratios.map((x) => x.toFixed(2)).join(', ')}), >= 0.6: **${r.tputCpu / r.limitPerCpuS >= 0.6 ? 'met' : 'missed'}**`,
        ],
        [
          `  limit: CPU by thread (s), ${r.limitInserts} inserts (${r.limitCutCount} cuts of ${f(r.CUT_ROWS)} events, one insert per table)`,
          r.limitByThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
          '',
        ],
      ],
    )}

${method(r)}`,
  );
}

/** How the run was made: the text under the section's table. */
function method(r: ProcessorReport): string {
  return `${f(r.produced)} events (${r.PER_MESSAGE} per Kafka message, ${r.NODES} nodes, ${r.PARTITIONS} partitions), batches of up to ${f(r.CUT_ROWS)} rows or
${f(r.BATCH_MS)} ms (BENCH_BATCH_MS; ${f(r.DEFAULTS.batchSmallMaxMs)} ms while under ${f(r.DEFAULTS.batchSmallRows)} rows, ${f(r.DEFAULTS.batchTrickleMaxMs)} ms while under ${f(r.TRICKLE_ROWS)}), enriched topic ${r.ENRICHED ? 'on' : 'off'}, at most ${f(r.PENDING_MAX_ROWS)} rows held across partitions (the bound the CLI derives from the shipped memory limit: docs/processor.md). One process holds the processor, chDB and the bench's producer, so CPU
figures include all three; the machine is shared, so wall-clock figures depend on its load
(load average ${loadavg()[0]?.toFixed(1)} at the end of this run). Rows are sent to chDB as Native blocks
(processor/src/clickhouse/native-format.ts). Latency: from the produce call to the moment the
processor's insert of the message's rows returned (synchronous inserts: queryable from then on),
taken from its stored hook (alerts, the enriched topic and the commit follow); every produced event was counted in chDB afterwards
(${f(r.latHigh.landed)} of ${f(r.latHigh.expected)} and ${f(r.latLow.landed)} of ${f(r.latLow.expected)}). Latency is measured at the target rate and at
${f(r.latLow.achievedRate)} events/s (BENCH_LOW_RATE, at least one 500-event message per 100 ms); when the processor can't keep up with a rate, its latency grows with the backlog.
Own work runs first, before anything is inserted (no background merges), after an uncounted
warm-up of a tenth of the events; its CPU is that of the processor's own threads (Node's main
thread, V8's GC and compiler threads, libuv's pool), not chDB's, and its alert state goes to a
store that keeps nothing. The trickle run comes next, on the still empty store: its processor
first settles for 5 s, then runs idle (started, restored, no events) for ${r.IDLE_S} s, whose CPU is
reported as the floor under the trickle's; above that floor the trickle's CPU is mostly
the fixed cost of each insert (each partition inserts into every table it has rows for once per
cut), not the rows; it runs until every message's cut is committed. Part of that fixed cost is the
filesystem's: every insert writes a part of about fifteen files per table and materialized view,
in a store on ${r.storeFilesystem} here (ext4 without a journal skips recently deleted inodes
for each file it creates, a cost a journaled filesystem does not pay: docs/perf-log.md). The backlog drain starts
once chDB runs no merge (of what the runs before it inserted), and ends when
the processor's inserts have returned every event (the bench does not query chDB meanwhile), and
a count then finds them all. The limit runs seconds after the drain, once chDB runs no merge: the same mix
(${r.EXIT_SHARE * 100}% exits) from memory, joined with its containers' records beforehand, each kind into
its table, in cuts of ${f(r.CUT_ROWS)} events: one insert per table and cut. Drain and limit run
${r.ratios.length} times in turn, each drain on a backlog of its own; the drain and limit figures are those of
the round whose ratio is the median; the drain's peak RSS is the first round's, on a store as fresh
as a new processor's (later rounds are listed under it). The drain inside a
memory cgroup of ${f(MEMORY_TARGET_BYTES / 2 ** 20)} MiB runs before all of this, from the runner (bench/run.ts), as a process of its own
on a fresh store: libchdb.so is dropped from the page cache first, so its pages are charged to
that cgroup as they would be to a fresh pod's (bench/processor/memory-limit.ts). Without a limit the
kernel leaves the file-backed pages resident and V8 sizes its heap by the machine's memory;
under the limit the kernel reclaims the former and V8 sizes its heap by the limit.`;
}
