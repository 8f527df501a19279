// The processor: one member of a consumer group over the events, containers and stats
// topics. This file wires the parts together and keeps the group's partition set:
// - group-runtime.ts drives the Kafka client (subscription, assignment, pause/resume,
//   commits) and hands each batch to its topic's consumer;
// - partition-pipeline.ts turns one events partition into batches written exactly once
//   (the rules are at its top);
// - topic-consumers.ts takes the containers (join metadata) and stats topics.
// On an assignment, events wait until the partition's containers were read to their end
// (Kafka Streams' restore phase), so the first batches join against complete metadata.
import { fixKafkajsEncoderZeroFill, useNativeCrc32cOrWarn } from '../../common/kafka.js';
import { fixKafkajsRecordBatchCopies } from '../../common/kafkajs-record-batch.js';
import { createLogger, type Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { AlertStateKeeper, type AlertStateStore } from './alert-state.js';
import { type BatchHandler, GroupRuntime, type GroupRuntimeOptions } from './group-runtime.js';
import type { BatchLimits } from './partition-batch.js';
import type { PipelineDeps } from './partition-pipeline.js';
import { PartitionSet } from './partition-set.js';
import { PendingBudget } from './pending-budget.js';
import {
  Accounts,
  type Processor,
  type ProcessorCodec,
  type ProcessorHooks,
  type ProcessorOptions,
  type ProcessorStats,
  type ProcessorTopics,
  type RowSink,
} from './processor-types.js';
import { createSchemaGate, type SchemaGate } from './schema-gate.js';
import { DEFAULT_OUTPUT_OPTIONS, OptionalOutputs } from './side-outputs.js';
import { consumeContainers, consumeStats } from './topic-consumers.js';

export type {
  LossCount,
  Processor,
  ProcessorCodec,
  ProcessorHooks,
  ProcessorOptions,
  ProcessorStats,
  ProcessorTopics,
  RowSink,
} from './processor-types.js';
export { emptyStats, processorTopics } from './processor-types.js';

/**
 * What holds fetching back: with a schema registry, the gate that pauses a partition until
 * the writer schemas of its batch are known; and the bound on rows held across partitions.
 */
function fetchControls(
  runtime: GroupRuntime,
  topics: ProcessorTopics,
  codec: ProcessorCodec,
  options: ProcessorOptions,
  log: Logger,
  set: () => PartitionSet,
): { schemaGate: SchemaGate | undefined; pending: PendingBudget } {
  /** An events partition may be resumed only when restored, owned and not held by the bound. */
  const resumable = (p: number) => {
    const pl = set().get(p);
    return pl?.owned() === true && pl.restored() && !pending.holds(p);
  };
  // With a schema registry, unknown writer-schema ids are looked up before a batch is decoded.
  const schemaGate =
    codec.prepare === undefined
      ? undefined
      : createSchemaGate({
          prepare: codec.prepare.bind(codec),
          pause: (topic, p) => runtime.pause(topic, [p]),
          resume: (topic, p) => {
            if (topic !== topics.events || resumable(p)) runtime.resume(topic, [p]);
          },
          log,
          retryInitialMs: options.retryInitialMs ?? 200,
          retryMaxMs: options.retryMaxMs ?? 5_000,
        });
  // Rows held across all partitions are bounded: at the bound, partitions stop taking messages.
  const pending = new PendingBudget(
    options.pendingMaxRows ?? Number.MAX_SAFE_INTEGER,
    {
      pause: (partitions) => runtime.pause(topics.events, partitions),
      resume: (ps) =>
        runtime.resume(
          topics.events,
          ps.filter((p) => set().get(p)?.restored()),
        ),
    },
    log,
  );
  return { schemaGate, pending };
}

function runtimeOptions(options: ProcessorOptions): GroupRuntimeOptions {
  return {
    groupId: options.groupId,
    sessionTimeoutMs: options.sessionTimeoutMs ?? 30_000,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 3_000,
    maxWaitTimeMs: Math.min(500, options.batchMaxMs),
    concurrency: options.concurrency ?? 4,
  };
}

/** One dead letter to the topic; a skip (topic down) is counted, the table has the dead letter anyway. */
async function produceDeadLetter(
  outputs: OptionalOutputs,
  codec: ProcessorCodec,
  topics: ProcessorTopics,
  accounts: Accounts,
  dl: DeadLetter,
): Promise<void> {
  const result = await outputs.publish({
    output: 'deadletter',
    topic: topics.deadletter,
    messages: [{ key: null, value: codec.encodeDeadLetter(dl) }],
    events: 1,
    eventsByNode: new Map([['', 1]]),
  });
  if (result.skipped)
    accounts.countLoss({
      node: '',
      what: 'topic:deadletter',
      reason: 'output_skipped',
      rows: 1,
      detail: result.reason,
    });
}

function batchLimits(options: ProcessorOptions): BatchLimits {
  if (options.batchMaxRows <= 0 || options.batchMaxMs <= 0)
    throw new Error('batchMaxRows and batchMaxMs must be > 0');
  return {
    maxRows: options.batchMaxRows,
    maxMs: options.batchMaxMs,
    smallRows: options.batchSmallRows ?? 0,
    smallMaxMs: Math.max(options.batchMaxMs, options.batchSmallMaxMs ?? 0),
    trickleRows: options.batchTrickleRows ?? 0,
    trickleMaxMs: Math.max(options.batchMaxMs, options.batchSmallMaxMs ?? 0, options.batchTrickleMaxMs ?? 0),
    lateWaitMs: options.lateMetadataWaitMs,
    lateMaxRows: options.lateBufferMaxEvents,
  };
}

/**
 * Each pipeline's cut timer cuts its batch when due, and a container record that resolves
 * waiting rows prompts a cut: the process's tick is a safety net under both, and evicts
 * stopped containers' metadata.
 */
function tickIntervalMs(batchMaxMs: number): number {
  return Math.max(20, Math.min(1_000, batchMaxMs));
}

export function createProcessor(deps: {
  kafka: import('kafkajs').Kafka;
  topics: ProcessorTopics;
  sink: RowSink;
  codec: ProcessorCodec;
  options: ProcessorOptions;
  hooks?: ProcessorHooks;
  logger?: Logger;
  /** Where alert-rule state is saved for the partition's next owner; unset = memory only. */
  alertState?: AlertStateStore;
}): Processor {
  const { topics, codec, options } = deps;
  const hooks = deps.hooks ?? {};
  const log = deps.logger ?? createLogger('processor');
  const accounts = new Accounts(log);
  const stats = accounts.stats;
  // The side outputs (enriched events above all) are produced record batches: their CRC-32C
  // from the codec addon, not kafkajs' byte-at-a-time JavaScript, and kafkajs' encoders grow
  // without zero-filling what they overwrite (common/kafka.ts), and compressed batches are
  // written with fewer copies (common/kafkajs-record-batch.ts).
  useNativeCrc32cOrWarn(log);
  fixKafkajsEncoderZeroFill();
  if (!fixKafkajsRecordBatchCopies()) log.warn('kafkajs copies each record batch through its own Encoders');
  const retryInitialMs = options.retryInitialMs ?? 200;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const restoreTimeoutMs = options.restoreTimeoutMs ?? 30_000;

  const runtime = new GroupRuntime(deps.kafka, runtimeOptions(options), log);
  const outputs = new OptionalOutputs(
    () => runtime.outputProducer(),
    { ...DEFAULT_OUTPUT_OPTIONS, ...options.outputs },
    log,
  );
  // The partition set is built below from the parts that need it back (deps refer to it lazily).
  let partitions: PartitionSet | undefined;
  const set = (): PartitionSet => partitions as PartitionSet;
  let running = false;
  let stopping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const { schemaGate, pending } = fetchControls(runtime, topics, codec, options, log, set);
  const alertStates = new AlertStateKeeper({
    store: deps.alertState,
    group: options.groupId,
    topic: topics.events,
    log,
    countFailure: () => stats.alertStateFailures++,
    restoreTimeoutMs,
    retryInitialMs,
    retryMaxMs,
  });

  const limits = batchLimits(options);
  const pipelineDeps: PipelineDeps = {
    store: deps.sink,
    committer: {
      commit: (partition, offset, metadata) => runtime.commit(topics.events, partition, offset, metadata),
      heartbeat: () => runtime.heartbeat(),
    },
    outputs,
    codec,
    topics,
    limits,
    groupId: options.groupId,
    enrichedTopic: options.enrichedTopic,
    rawTtlDays: options.rawTtlDays,
    alertRules: options.alerts,
    retryInitialMs,
    retryMaxMs,
    pending,
    alertStates,
    stats,
    hooks,
    log,
    memberId: () => set().memberId,
    noteDeadLetter: accounts.noteDeadLetter,
    countLoss: accounts.countLoss,
    cutAlongside: (partition) => set().cutAlongside(partition),
  };

  partitions = new PartitionSet({
    runtime,
    topics,
    pending,
    alertStates,
    pipelineDeps,
    hooks,
    log,
    retentionNs: BigInt(options.metadataRetentionMs) * 1_000_000n,
    retryInitialMs,
    retryMaxMs,
    restoreTimeoutMs,
  });
  const ps = partitions;

  const handlers = topicHandlers(ps, {
    topics,
    store: deps.sink,
    codec,
    stats,
    log,
    runtime,
    produceDeadLetter: (dl) => produceDeadLetter(outputs, codec, topics, accounts, dl),
    skipped: accounts.warnSampled,
  });
  return {
    async start() {
      await Promise.all([runtime.connect(), outputs.connect()]);
      // Containers: never committed, so every assignment re-reads the compacted topic from
      // the start; events: from the committed watermark (or the beginning for a new group).
      const subscribed = [topics.events, topics.containers];
      if (topics.stats !== undefined) subscribed.push(topics.stats);
      running = true;
      timer = setInterval(() => ps.tick(stats), tickIntervalMs(options.batchMaxMs));
      timer.unref();
      const joined = (id: string, assignment: Record<string, number[]>) => {
        ps.memberId = id;
        ps.revokeAll('rejoined');
        ps.assigned(assignment).catch((err) => log.error({ err }, 'assignment setup failed'));
      };
      await runtime.run(
        subscribed,
        { joined, revoked: (reason) => ps.revokeAll(reason) },
        handlers,
        schemaGate,
      );
    },
    stop() {
      stopping ??= (async () => {
        // The small-batch windows save CPU while running; a stop (and its catch-up) cuts
        // what is left at batchMaxMs instead of waiting for them.
        limits.smallRows = 0;
        limits.trickleRows = 0;
        await stopMember(ps, runtime, topics, options, log, () => {
          if (timer !== undefined) clearInterval(timer);
          schemaGate?.close();
        });
        running = false;
        await Promise.all([runtime.disconnect(), outputs.close()]);
      })();
      return stopping;
    },
    stats: () => withGateStats(stats, schemaGate?.stats()),
    pending: () => pending.snapshot(),
    losses: () => accounts.losses(),
    // Ready once in the group (a member with no partition is ready) and every partition restored.
    ready: () => running && ps.memberId !== '' && ps.all().every((s) => s.restored()),
    memberId: () => ps.memberId,
  };
}

/** The processor's counters with the schema gate's beside them (zero without a registry). */
function withGateStats(
  stats: Accounts['stats'],
  gate: { outages: number; heldBatches: number } | undefined,
): ReturnType<Processor['stats']> {
  return {
    ...stats,
    schemaRegistryOutages: gate?.outages ?? 0,
    schemaRegistryHeldBatches: gate?.heldBatches ?? 0,
  };
}

/** Each subscribed topic's consumer. */
function topicHandlers(
  ps: PartitionSet,
  d: {
    topics: ProcessorTopics;
    store: RowSink;
    codec: ProcessorCodec;
    stats: ProcessorStats;
    log: Logger;
    runtime: GroupRuntime;
    produceDeadLetter(dl: DeadLetter): Promise<void>;
    skipped(reason: string, fields: Record<string, unknown>, msg: string): void;
  },
): Map<string, BatchHandler> {
  const handlers = new Map<string, BatchHandler>();
  const owning = (p: number) => ps.owning(p);
  handlers.set(d.topics.events, async (batch, ctl) => owning(batch.partition)?.consume(batch.messages, ctl));
  const containers = {
    store: d.store,
    codec: d.codec,
    stats: d.stats,
    log: d.log,
    metadata: (p: number) => ps.metadata(p),
    pipeline: (p: number) => ps.get(p),
    readUpTo: (p: number, next: bigint) => ps.containersReadUpTo(p, next),
    skipped: d.skipped,
  };
  handlers.set(d.topics.containers, (batch, ctl) => consumeContainers(containers, batch, ctl));
  const stats = {
    codec: d.codec,
    runtime: d.runtime,
    log: d.log,
    pipeline: owning,
    produceDeadLetter: d.produceDeadLetter,
  };
  if (d.topics.stats !== undefined)
    handlers.set(d.topics.stats, (batch, ctl) => consumeStats(stats, batch, ctl));
  return handlers;
}

/**
 * Stops a member: what the collectors sent before they stopped (an ordered `ktrail stop`
 * stops them first) is written and committed before it leaves (catch-up.ts); then fetching
 * pauses and each owned partition flushes what it holds. Leaving (LeaveGroup) lets a
 * restarted member get the partitions at once, without waiting for a session timeout.
 */
async function stopMember(
  ps: PartitionSet,
  runtime: GroupRuntime,
  topics: ProcessorTopics,
  options: ProcessorOptions,
  log: Logger,
  stopTimers: () => void,
): Promise<void> {
  const owned = ps
    .all()
    .filter((pl) => ps.current(pl))
    .map((s) => s.partition);
  if ((options.stopCatchUpMs ?? 0) > 0 && owned.length > 0) {
    const committed = topics.stats === undefined ? [topics.events] : [topics.events, topics.stats];
    const r = await runtime.catchUp(committed, owned, options.stopCatchUpMs ?? 0);
    if (r.caughtUp) log.info({ ms: r.ms, partitions: owned }, 'stop: caught up with the end offsets');
    else log.warn({ ms: r.ms, behind: r.behind }, 'stop: not caught up; the next owner reads the rest');
  }
  stopTimers();
  runtime.pause(topics.events);
  runtime.pause(topics.containers);
  await Promise.all(
    ps.all().map((pl) =>
      pl
        .withLock(async () => {
          if (ps.current(pl) && pl.forcedCut === undefined) await pl.flush();
          await pl.drain();
        })
        .catch((err) => log.error({ err, partition: pl.partition }, 'final flush failed')),
    ),
  );
}
