// The consumer-group runtime: the one module that drives kafkajs for consuming. It owns the
// consumer (subscription, the co-partitioned assigner, pause/resume, commits, heartbeats),
// the producers behind the side outputs and the admin client, and hands each fetched batch to
// the handler of its topic. Replacing the Kafka client means replacing this file.
import type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
// kafkajs spreads its error classes into its CommonJS exports: only the default import sees them.
import kafkajs from 'kafkajs';
import { TransientError } from '../../common/errors.js';
import { kafkajsErrorType } from '../../common/kafka-topics.js';
import type { Logger } from '../../common/log.js';
import { coPartitionedAssigner } from './assigner.js';
import { type CatchUpResult, catchUpToEnd } from './catch-up.js';
import type { BatchControl, InMessage } from './processor-types.js';
import type { SchemaGate } from './schema-gate.js';
import { recordingPartitioner } from './side-outputs.js';

/** One fetched batch of one partition. */
export interface TopicBatch {
  topic: string;
  partition: number;
  messages: InMessage[];
  firstOffset(): string | null;
  lastOffset(): string;
}

export type BatchHandler = (batch: TopicBatch, ctl: BatchControl) => Promise<void>;

/** Committed offsets (with metadata) of the events topic and end offsets of the containers topic. */
export interface AssignmentOffsets {
  committed: { partition: number; offset: string; metadata: string | null }[];
  ends: { partition: number; high: string; low: string }[];
}

export interface GroupEvents {
  /** Joined a generation with this assignment (revoke first, then set up). */
  joined(memberId: string, assignment: Record<string, number[]>): void;
  /** A rebalance started or the consumer crashed: every partition is revoked. */
  revoked(reason: string): void;
}

export interface GroupRuntimeOptions {
  groupId: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** How long the broker may hold a fetch that finds nothing (bounds the delay after a resume). */
  maxWaitTimeMs: number;
  concurrency: number;
}

export class GroupRuntime {
  readonly consumer: Consumer;
  private readonly admin: Admin;
  private heartbeatFn: (() => Promise<void>) | undefined;
  /** kafkajs' runner state: a commit it gets while stopped returns without committing. */
  private runnerRunning: (() => boolean) | undefined;
  /**
   * A commit or heartbeat found the group coordinator gone or moved. kafkajs looks the
   * coordinator up only when it (re)joins, and rejoins only on an error raised inside its
   * runner; commits and heartbeats made from the pipeline are outside it, so the next batch
   * handed to us raises it there.
   */
  private coordinatorMoved: unknown;
  private events: GroupEvents | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly o: GroupRuntimeOptions,
    private readonly log: Logger,
  ) {
    this.consumer = kafka.consumer({
      groupId: o.groupId,
      partitionAssigners: [coPartitionedAssigner],
      sessionTimeout: o.sessionTimeoutMs,
      heartbeatInterval: o.heartbeatIntervalMs,
      maxBytesPerPartition: 4 * 1024 * 1024,
      // kafkajs' 5 s default would delay a partition resumed after its metadata restore by up
      // to 5 s: the fetch in flight covers only the partitions not paused.
      maxWaitTimeInMs: o.maxWaitTimeMs,
    });
    this.admin = kafka.admin();
  }

  /**
   * A new producer for the side outputs (OptionalOutputs connects it, and replaces it after a
   * failed send). Every produce is to an output that must not stall ingestion: kafkajs' own
   * retries are kept short, and OptionalOutputs bounds each send and skips (counted) what
   * fails. Idempotent (kafkajs needs one request in flight for it): a retry after a lost
   * acknowledgement or a leader change is recognised by the broker, not written twice.
   */
  outputProducer(): Producer {
    return this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: recordingPartitioner,
      allowAutoTopicCreation: false,
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 },
    });
  }

  async connect(): Promise<void> {
    await Promise.all([this.admin.connect(), this.consumer.connect()]);
    // A broker that just started answers the first join with "coordinator is loading" (and
    // the consumer crashes and restarts on it): ask for the group until its coordinator serves.
    try {
      await this.admin.describeGroups([this.o.groupId]);
    } catch (err) {
      this.log.warn({ err }, 'group coordinator not answering yet; joining anyway');
    }
  }

  /** Subscribes (from the beginning for a new group), then runs until stopped. */
  async run(
    topics: string[],
    events: GroupEvents,
    handlers: Map<string, BatchHandler>,
    gate: SchemaGate | undefined,
  ): Promise<void> {
    const c = this.consumer;
    this.events = events;
    c.on(c.events.GROUP_JOIN, (e) => events.joined(e.payload.memberId, e.payload.memberAssignment));
    c.on(c.events.REBALANCING, () => events.revoked('rebalancing'));
    c.on(c.events.CRASH, (e) => {
      events.revoked('consumer crashed');
      this.log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
    });
    await c.subscribe({ topics, fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.o.concurrency,
      eachBatch: async (payload: EachBatchPayload) => {
        this.heartbeatFn = payload.heartbeat;
        this.runnerRunning = payload.isRunning;
        this.rejoinIfCoordinatorMoved();
        if (gate !== undefined && !(await gate.admit(payload.batch))) return;
        const handler = handlers.get(payload.batch.topic);
        if (handler === undefined) return;
        const b = payload.batch;
        await handler(
          {
            topic: b.topic,
            partition: b.partition,
            messages: b.messages,
            firstOffset: () => b.firstOffset(),
            lastOffset: () => b.lastOffset(),
          },
          {
            active: () => payload.isRunning() && !payload.isStale(),
            resolveOffset: (o) => payload.resolveOffset(o),
            heartbeat: () => payload.heartbeat(),
          },
        );
      },
    });
  }

  pause(topic: string, partitions?: number[]): void {
    this.consumer.pause([partitions === undefined ? { topic } : { topic, partitions }]);
  }

  resume(topic: string, partitions: number[]): void {
    this.consumer.resume([{ topic, partitions }]);
  }

  /** Heartbeats between fetches; a failure means a rebalance, seen through the group events. */
  async heartbeat(): Promise<void> {
    try {
      await this.heartbeatFn?.();
    } catch (err) {
      // A rebalance: the REBALANCING event revokes the partitions. A moved coordinator: no
      // event comes until the runner sees the error.
      if (!endsGeneration(err)) this.noteCoordinatorMoved(err);
    }
  }

  /**
   * The member must rejoin to find its coordinator, so its partitions are given up now, as a
   * rebalance would. kafkajs raises the error that rejoins only once every batch handler has
   * returned (its fetch manager stops its workers first): a pipeline still retrying a commit
   * to the old coordinator would hold that rejoin, and itself, until the session expired.
   */
  private noteCoordinatorMoved(err: unknown): void {
    if (this.coordinatorMoved !== undefined) return;
    this.coordinatorMoved = err;
    if (this.runnerRunning?.() !== false) this.events?.revoked('group coordinator moved');
  }

  /** Hands a moved coordinator to kafkajs' runner as the error it rejoins on. */
  private rejoinIfCoordinatorMoved(): void {
    if (this.coordinatorMoved === undefined) return;
    const cause = this.coordinatorMoved;
    this.coordinatorMoved = undefined;
    this.log.warn({ err: cause }, 'group coordinator moved: rejoining to find it');
    throw new kafkajs.KafkaJSProtocolError({
      type: 'NOT_COORDINATOR_FOR_GROUP',
      code: 16,
      retriable: false,
      message: 'group coordinator moved',
    } as never);
  }

  /**
   * Commits one partition's offset, never returning without committing: kafkajs returns
   * quietly when its runner has stopped (a crash, a stop), before or during the commit.
   */
  async commit(topic: string, partition: number, offset: bigint, metadata: string | null): Promise<void> {
    if (this.runnerRunning?.() === false) throw new Error('consumer not running: nothing committed');
    try {
      await this.consumer.commitOffsets([{ topic, partition, offset: String(offset), metadata }]);
    } catch (err) {
      if (endsGeneration(err)) throw err;
      this.noteCoordinatorMoved(err);
      throw new TransientError('offset commit: group coordinator unreachable', { cause: err });
    }
    if (this.runnerRunning?.() === false)
      throw new Error('consumer stopped during the commit: it may not have landed');
  }

  /** The group's committed offsets of `topic` and the end offsets of `endsOf`. */
  async assignmentOffsets(topic: string, endsOf: string): Promise<AssignmentOffsets> {
    const [committed, ends] = await Promise.all([
      this.admin.fetchOffsets({ groupId: this.o.groupId, topics: [topic] }),
      this.admin.fetchTopicOffsets(endsOf),
    ]);
    const parts = committed.find((t) => t.topic === topic)?.partitions ?? [];
    return {
      committed: parts.map((p) => ({ partition: p.partition, offset: p.offset, metadata: p.metadata })),
      ends,
    };
  }

  /** Waits (bounded) for the group's commits to reach the end offsets of this moment (catch-up.ts). */
  catchUp(topics: string[], partitions: number[], ms: number): Promise<CatchUpResult> {
    return catchUpToEnd(this.admin, this.o.groupId, topics, partitions, ms);
  }

  async disconnect(): Promise<void> {
    await this.consumer.disconnect();
    await this.admin.disconnect();
  }
}

/** kafkajs errors (through their causes) saying this member's generation is over: a rejoin follows. */
const GENERATION_OVER = new Set([
  'REBALANCE_IN_PROGRESS',
  'ILLEGAL_GENERATION',
  'UNKNOWN_MEMBER_ID',
  'FENCED_INSTANCE_ID',
]);

export function endsGeneration(err: unknown): boolean {
  return GENERATION_OVER.has(kafkajsErrorType(err) ?? '');
}
