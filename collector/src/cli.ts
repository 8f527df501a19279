// `collector` (npm run collector -- ...): the per-node process.
//
//   collector --config FILE [--set section.key=value ...] [--node NAME]
//   collector --replay FILE [--replay-rate N] [--replay-loop]      capture file instead of eBPF
//   collector --dry-run [...]     decoded events as JSON lines on stdout, nothing to Kafka
//   collector --print-config [...]  the validated configuration as JSON (secrets hidden), exit
//
// SIGTERM / SIGINT: stop the sources, flush what is held within collector.shutdownDeadlineMs,
// print the final counters, exit 0. A bad configuration exits 2 with a message naming the
// setting; a fatal runtime error (e.g. topics that break co-partitioning) exits 1.
import { setFlagsFromString } from 'node:v8';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig, printableConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { createLogger, setLogLevel } from '../../common/log.js';
import { createRegistry, startHttpServer } from '../../common/metrics.js';
import { buildCollector, openReplay } from './build.js';
import type { EventSource } from './collector.js';
import { configuredCgroupV2Root } from './kernel/addon.js';
import { createDecoder } from './kernel/decode.js';
import { CapabilityError } from './kernel/privileges.js';
import { createKernelSource } from './sources.js';

interface CliOptions {
  config?: string;
  set: string[];
  node?: string;
  dryRun?: boolean;
  printConfig?: boolean;
  replay?: string;
  replayRate: number;
  replayLoop?: boolean;
}

const log = createLogger('collector.cli');

// The old generation may grow to twice what survived the last full GC before the next one
// starts. At low allocation rates V8 otherwise sets its limit so close to the ~20 MiB live
// heap that it starts incremental marking right after each full GC: a mark-compact every
// second or so, most of the collector's CPU at 10k events/s (docs/collector.md, Cost).
// Set here, not on a command line, so it holds wherever the collector runs.
setFlagsFromString('--heap-growing-percent=100');

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number >= 0');
  return n;
}

/** JSON with bigint as decimal strings (u64 values keep every digit) and Buffers as hex. */
function eventToJson(event: unknown): string {
  return JSON.stringify(event, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (value !== null && typeof value === 'object' && (value as { type?: string }).type === 'Buffer')
      return Buffer.from((value as { data: number[] }).data).toString('hex');
    return value;
  });
}

async function dryRun(source: EventSource): Promise<void> {
  const decoder = createDecoder();
  const out = process.stdout;
  let pendingWrite = Promise.resolve();
  const stop = async (): Promise<void> => {
    await source.stop();
    await pendingWrite;
    process.stderr.write(
      `dry run: ${decoder.stats.decoded} events, ${decoder.stats.malformed} malformed records\n`,
    );
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await source.start((buf, records) => {
    const { events } = decoder.decode(buf, records);
    let text = '';
    for (const e of events) text += `${eventToJson(e)}\n`;
    if (text.length > 0 && !out.write(text))
      pendingWrite = new Promise((resolve) => out.once('drain', () => resolve()));
  });
  if (source.done) {
    await source.done;
    await stop();
  }
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('collector')
    .description('ktrail collector: kernel events -> Avro -> Kafka, with exact loss accounting')
    .option('-c, --config <file>', 'YAML or JSON config file (see README: configuration)')
    .option(
      '--set <section.key=value>',
      'override one setting (repeatable)',
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .option('--node <name>', 'node name (Kafka key; default: hostname)')
    .option('--dry-run', 'print decoded events as JSON lines on stdout; send nothing to Kafka')
    .option('--print-config', 'print the validated configuration as JSON (secrets as "[secret]") and exit')
    .option('--replay <file>', 'read records from a capture file instead of the kernel')
    .option('--replay-rate <eventsPerSecond>', 'replay pacing (0 = as fast as possible)', nonNegative, 0)
    .option('--replay-loop', 'replay the file over and over until stopped')
    .showHelpAfterError();
  program.parse(argv);
  const opts = program.opts<CliOptions>();

  const overrides = [...opts.set];
  if (opts.node !== undefined) overrides.push(`node=${opts.node}`);
  if (opts.replay !== undefined)
    overrides.push('collector.source=replay', `collector.replayFile=${opts.replay}`);
  const config = loadConfig({ file: opts.config, overrides });
  if (opts.printConfig) {
    process.stdout.write(`${printableConfig(config)}\n`);
    return;
  }
  setLogLevel(opts.dryRun ? 'warn' : config.log.level);
  const replay = { rate: opts.replayRate, loop: opts.replayLoop === true };

  if (opts.dryRun) {
    const settings = config.collector;
    const source =
      settings.source === 'replay'
        ? openReplay(settings.replayFile ?? '', replay)
        : createKernelSource({
            bpfObjectDir: settings.bpfObjectDir,
            ringBufferBytes: settings.ringBufferBytes,
            programs: settings.programs,
            cgroupRoot: configuredCgroupV2Root(settings.cgroupRoot),
          });
    await dryRun(source);
    return;
  }

  // One lag sample a second: ten a second cost ~0.06% of a core, a tenth of the collector's
  // CPU at rest. Stalls of a second or more, the ones that back events up, always show.
  const registry = createRegistry('collector', config.node, { lagResolutionMs: 1_000 });
  let exitCode = 0;
  const built = await buildCollector({
    config,
    registry,
    replay,
    onFatal: (err) => {
      exitCode = 1;
      log.fatal({ err }, 'fatal: stopping');
      void shutdown('fatal');
    },
  });
  const http = await startHttpServer({
    port: config.http.port,
    host: config.http.host,
    registry,
    ready: () => built.collector.ready(),
  });
  log.info({ port: http.port }, 'metrics on /metrics, health on /healthz and /readyz');

  // Every timer in the pipeline is unref'd (none may hold a stopping process open), so this
  // one keeps the collector alive while Kafka is down and nothing else is pending.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let shuttingDown: Promise<void> | undefined;
  function shutdown(reason: string): Promise<void> {
    shuttingDown ??= (async () => {
      log.info({ reason, deadlineMs: config.collector.shutdownDeadlineMs }, 'shutting down: flushing');
      const final = await built.stop();
      await http.close();
      clearInterval(keepAlive);
      process.stderr.write(
        `collector stopped: captured ${final.captured}, delivered ${final.delivered}, dropped ${final.droppedTotal} ` +
          `${JSON.stringify(final.dropped)}, pending ${final.pending}, unaccounted ${final.unaccounted}\n`,
      );
      process.exit(exitCode);
    })();
    return shuttingDown;
  }
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  await built.start();
  // A finite replay ends by itself: flush and exit like on SIGTERM.
  const done = built.collector.sourceDone;
  if (done) {
    await done;
    await shutdown('replay finished');
  }
}

main(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`collector: ${err.message}\n`);
    process.exit(2);
  }
  // The capability and the step that needed it say everything; a stack would bury them.
  if (err instanceof CapabilityError) {
    process.stderr.write(`collector: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`collector: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
