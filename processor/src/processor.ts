// The processor: one member of a consumer group over the events, containers and stats
// topics. This file wires the parts together and keeps the group's partition set:
// - group-runtime.ts drives the Kafka client (subscription, assignment, pause/resume,
//   commits) and hands each batch to its topic's consumer;
// - partition-pipeline.ts turns one events partition into batches written exactly once
//   (the rules are at its top);
// - topic-consumers.ts takes the containers (join metadata) and stats topics.
// On an assignment, events wait until the partition's containers were read to their end
// (Kafka Streams' restore phase), so the first batches join against complete metadata.
import { useNativeCrc32cOrWarn } from '../../common/kafka.js';
import { createLogger, createThrottledWarn, type Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { AlertStateKeeper, type AlertStateStore } from './alert-state.js';
import type { BatchHandler } from './group-runtime.js';
import { GroupRuntime } from './group-runtime.js';
import { MetadataTable } from './metadata-table.js';
import { type BatchLimits, decodeCut } from './partition-batch.js';
import { PartitionPipeline, type PipelineDeps } from './partition-pipeline.js';
import { PendingBudget } from './pending-budget.js';
import {
  emptyStats,
  type LossCount,
  type Processor,
  type ProcessorCodec,
  type ProcessorHooks,
  type ProcessorOptions,
  type ProcessorTopics,
  type RowSink,
} from './processor-types.js';
import type { LossRow } from './rows.js';
import { createSchemaGate } from './schema-gate.js';
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
  // Dead letters are in their table and topic; the log gets a sample per reason, not a line each.
  const warnDeadLetter = createThrottledWarn(log);
  // The side outputs (enriched events above all) are produced record batches: their CRC-32C
  // from the codec addon, not kafkajs' byte-at-a-time JavaScript (common/kafka.ts).
  useNativeCrc32cOrWarn(log);
  if (options.batchMaxRows <= 0 || options.batchMaxMs <= 0)
    throw new Error('batchMaxRows and batchMaxMs must be > 0');
  const limits: BatchLimits = {
    maxRows: options.batchMaxRows,
    maxMs: options.batchMaxMs,
    smallRows: options.batchSmallRows ?? 0,
    smallMaxMs: Math.max(options.batchMaxMs, options.batchSmallMaxMs ?? 0),
    lateWaitMs: options.lateMetadataWaitMs,
    lateMaxRows: options.lateBufferMaxEvents,
  };
  const retryInitialMs = options.retryInitialMs ?? 200;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const restoreTimeoutMs = options.restoreTimeoutMs ?? 30_000;
  const retentionNs = BigInt(options.metadataRetentionMs) * 1_000_000n;

  const runtime = new GroupRuntime(
    deps.kafka,
    {
      groupId: options.groupId,
      sessionTimeoutMs: options.sessionTimeoutMs ?? 30_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 3_000,
      maxWaitTimeMs: Math.min(500, options.batchMaxMs),
      concurrency: options.concurrency ?? 4,
    },
    log,
  );
  const outputs = new OptionalOutputs(
    runtime.producer,
    { ...DEFAULT_OUTPUT_OPTIONS, ...options.outputs },
    log,
  );
  const pipelines = new Map<number, PartitionPipeline>();
  /** Metadata tables survive a rebalance for partitions this member keeps. */
  const tables = new Map<number, MetadataTable>();
  const restoreTargets = new Map<number, { pipeline: PartitionPipeline; high: bigint }>();
  /** Next offset to read per containers partition in this generation (restore progress). */
  const containersRead = new Map<number, bigint>();
  let generation = 0;
  let memberId = '';
  let running = false;
  let stopping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  /** An events partition may be resumed only when restored, owned and not held by the bound. */
  const resumable = (p: number) => {
    const pl = pipelines.get(p);
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
          retryInitialMs,
          retryMaxMs,
        });
  // Rows held across all partitions are bounded: at the bound, partitions stop taking messages.
  const pending = new PendingBudget(
    options.pendingMaxRows ?? Number.MAX_SAFE_INTEGER,
    {
      pause: (partitions) => runtime.pause(topics.events, partitions),
      resume: (ps) =>
        runtime.resume(
          topics.events,
          ps.filter((p) => pipelines.get(p)?.restored()),
        ),
    },
    log,
  );
  const stats = emptyStats();
  const lossCounts = new Map<string, LossCount>();
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

  function countLoss(loss: LossRow): void {
    const key = `${loss.what}\u0000${loss.reason}`;
    const c = lossCounts.get(key);
    if (c === undefined) lossCounts.set(key, { what: loss.what, reason: loss.reason, rows: loss.rows });
    else c.rows += loss.rows;
    if (loss.reason === 'older_than_ttl') stats.expiredRows += loss.rows;
    else stats.outputSkipped += loss.rows;
  }

  function noteDeadLetter(reason: string, fields: Record<string, unknown>): void {
    stats.deadLetters++;
    warnDeadLetter(reason, { ...fields, reason }, 'dead letter');
  }

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
    memberId: () => memberId,
    noteDeadLetter,
    countLoss,
  };

  /** Owned by this member in the current generation. */
  function current(pl: PartitionPipeline): boolean {
    return pl.owned() && pl.generation === generation && pipelines.get(pl.partition) === pl;
  }

  function revokeAll(reason: string): void {
    generation++;
    for (const pl of pipelines.values()) {
      pl.revoke();
      pending.release(pl.batch);
      if (!pl.batch.isEmpty()) pl.dropped(pl.batch.firstOffset as bigint, pl.batch.lastOffset as bigint);
    }
    containersRead.clear();
    restoreTargets.clear();
    pending.forgetPaused();
    if (pipelines.size > 0)
      log.info({ reason, generation }, 'partitions revoked; pending batches dropped uncommitted');
    pipelines.clear();
  }

  function markRestored(pl: PartitionPipeline): void {
    restoreTargets.delete(pl.partition);
    if (pl.markRestored() && current(pl)) runtime.resume(topics.events, [pl.partition]);
  }

  async function onAssigned(assignment: Record<string, number[]>): Promise<void> {
    const gen = generation;
    const eventsParts = assignment[topics.events] ?? [];
    const containerParts = new Set(assignment[topics.containers] ?? []);
    for (const p of [...tables.keys()]) if (!eventsParts.includes(p)) tables.delete(p);
    const fresh: PartitionPipeline[] = [];
    for (const p of eventsParts) {
      let metadata = tables.get(p);
      if (metadata === undefined) {
        metadata = new MetadataTable(retentionNs);
        tables.set(p, metadata);
      }
      const pl = new PartitionPipeline(p, gen, metadata, pipelineDeps);
      pipelines.set(p, pl);
      fresh.push(pl);
    }
    if (fresh.length > 0) runtime.pause(topics.events, eventsParts);
    hooks.onAssigned?.({ memberId, generation: gen, assignment });
    const init = (async () => {
      // Without the recorded cuts the first batches could be cut differently than before a
      // crash (and duplicate rows), so keep asking until the broker answers or the
      // assignment is gone.
      let delay = retryInitialMs;
      let fetched: Awaited<ReturnType<GroupRuntime['assignmentOffsets']>>;
      for (;;) {
        try {
          fetched = await runtime.assignmentOffsets(topics.events, topics.containers);
          break;
        } catch (err) {
          if (gen !== generation) return;
          log.warn(
            { err: (err as Error).message, delayMs: delay },
            'reading committed offsets failed; retrying',
          );
          await sleep(delay);
          delay = Math.min(delay * 2, retryMaxMs);
        }
      }
      const { committed, ends } = fetched;
      // Alert state before the first event (events stay paused until markRestored below).
      await Promise.all(
        fresh.map((pl) =>
          alertStates.restore(
            pl.partition,
            pl.alerts,
            committed.find((x) => x.partition === pl.partition),
            () => gen === generation,
          ),
        ),
      );
      for (const pl of fresh) {
        const c = committed.find((x) => x.partition === pl.partition);
        pl.forcedCut = decodeCut(c?.metadata);
        if (pl.forcedCut !== undefined)
          log.info({ partition: pl.partition, cut: String(pl.forcedCut) }, 'resuming a recorded cut');
        const end = ends.find((e) => e.partition === pl.partition);
        const high = end === undefined ? 0n : BigInt(end.high);
        const readUpTo = containersRead.get(pl.partition) ?? -1n;
        if (
          !containerParts.has(pl.partition) ||
          end === undefined ||
          end.high === end.low ||
          readUpTo >= high
        )
          markRestored(pl);
        else restoreTargets.set(pl.partition, { pipeline: pl, high });
      }
    })();
    for (const pl of fresh) pl.init = init;
    await init;
    setTimeout(() => {
      for (const pl of fresh)
        if (current(pl) && !pl.restored()) {
          log.warn({ partition: pl.partition }, 'containers topic not restored in time; events join late');
          markRestored(pl);
        }
    }, restoreTimeoutMs).unref();
  }

  /** One dead letter to the topic; a skip (topic down) is counted, the table has the dead letter anyway. */
  async function produceDeadLetter(dl: DeadLetter): Promise<void> {
    const result = await outputs.publish({
      output: 'deadletter',
      topic: topics.deadletter,
      messages: [{ key: null, value: codec.encodeDeadLetter(dl) }],
      events: 1,
      eventsByNode: new Map([['', 1]]),
    });
    if (result.skipped)
      countLoss({
        node: '',
        what: 'topic:deadletter',
        reason: 'output_skipped',
        rows: 1,
        detail: result.reason,
      });
  }

  const owning = (p: number) => {
    const pl = pipelines.get(p);
    return pl !== undefined && current(pl) ? pl : undefined;
  };
  const handlers = new Map<string, BatchHandler>();
  handlers.set(topics.events, async (batch, ctl) => owning(batch.partition)?.consume(batch.messages, ctl));
  handlers.set(topics.containers, (batch, ctl) =>
    consumeContainers(
      {
        store: deps.sink,
        codec,
        stats,
        log,
        metadata: (p) => tables.get(p),
        pipeline: (p) => pipelines.get(p),
        readUpTo: (p, next) => {
          containersRead.set(p, next);
          const target = restoreTargets.get(p);
          if (target !== undefined && next >= target.high) markRestored(target.pipeline);
        },
        skipped: (reason, fields, msg) => warnDeadLetter(reason, fields, msg),
      },
      batch,
      ctl,
    ),
  );
  if (topics.stats !== undefined)
    handlers.set(topics.stats, (batch, ctl) =>
      consumeStats({ codec, runtime, log, pipeline: owning, produceDeadLetter }, batch, ctl),
    );

  let lastEviction = 0;
  function evict(): void {
    const now = Date.now();
    if (now - lastEviction < 60_000) return;
    lastEviction = now;
    const nowNs = BigInt(now) * 1_000_000n;
    for (const t of tables.values()) stats.metadataEvictions += t.evictStopped(nowNs);
  }

  async function stop(): Promise<void> {
    // What the collectors sent before they stopped (an ordered `ktrail stop` stops them
    // first) is written and committed before this member leaves (catch-up.ts).
    const owned = [...pipelines.values()].filter(current).map((s) => s.partition);
    if ((options.stopCatchUpMs ?? 0) > 0 && owned.length > 0) {
      const committed = topics.stats === undefined ? [topics.events] : [topics.events, topics.stats];
      const r = await runtime.catchUp(committed, owned, options.stopCatchUpMs ?? 0);
      if (r.caughtUp) log.info({ ms: r.ms, partitions: owned }, 'stop: caught up with the end offsets');
      else log.warn({ ms: r.ms, behind: r.behind }, 'stop: not caught up; the next owner reads the rest');
    }
    if (timer !== undefined) clearInterval(timer);
    schemaGate?.close();
    // Pause fetching, flush what each owned partition holds, then leave (LeaveGroup: a
    // restarted member gets the partitions at once, without waiting for a session timeout).
    runtime.pause(topics.events);
    runtime.pause(topics.containers);
    await Promise.all(
      [...pipelines.values()].map((pl) =>
        pl
          .withLock(async () => {
            if (current(pl) && pl.forcedCut === undefined) await pl.flush();
            await pl.drain();
          })
          .catch((err) => log.error({ err, partition: pl.partition }, 'final flush failed')),
      ),
    );
    running = false;
    await runtime.disconnect();
  }

  return {
    async start() {
      await runtime.connect();
      // Containers: never committed, so every assignment re-reads the compacted topic from
      // the start; events: from the committed watermark (or the beginning for a new group).
      const subscribed = [topics.events, topics.containers];
      if (topics.stats !== undefined) subscribed.push(topics.stats);
      running = true;
      timer = setInterval(
        () => {
          for (const pl of pipelines.values()) if (current(pl)) pl.cutIfDue();
          evict();
        },
        Math.max(20, Math.min(200, options.batchMaxMs / 5)),
      );
      timer.unref();
      await runtime.run(
        subscribed,
        {
          joined: (id, assignment) => {
            memberId = id;
            revokeAll('rejoined');
            onAssigned(assignment).catch((err) => log.error({ err }, 'assignment setup failed'));
          },
          revoked: (reason) => revokeAll(reason),
        },
        handlers,
        schemaGate,
      );
    },
    stop() {
      stopping ??= stop();
      return stopping;
    },
    stats: () => {
      const gate = schemaGate?.stats();
      return {
        ...stats,
        schemaRegistryOutages: gate?.outages ?? 0,
        schemaRegistryHeldBatches: gate?.heldBatches ?? 0,
      };
    },
    pending: () => pending.snapshot(),
    losses: () => [...lossCounts.values()].map((c) => ({ ...c })),
    ready: () => running && [...pipelines.values()].every((s) => s.restored()),
    memberId: () => memberId,
  };
}
