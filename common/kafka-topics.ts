// The ktrail topics: their names, their settings, and `ensureTopics`, which creates them
// idempotently, waits until every partition's leader serves, and refuses to run on topics
// whose partition counts would break co-partitioning or whose required settings differ.

import type { Admin, ITopicConfig, ITopicMetadata } from 'kafkajs';
import { ConfigError, TransientError } from './errors.js';
import { clusterReplication, type Replication } from './kafka-replication.js';

export interface TopicNames {
  /** Event batches from the collectors; key = node. */
  events: string;
  /** Container metadata, compacted; co-partitioned with `events` (same count, same key hash). */
  containers: string;
  /** Collector stats (counters, loss) per node. */
  stats: string;
  /** Messages the processor could never handle, with the reason in headers. */
  deadletter: string;
  /** Events joined with their container metadata, for downstream consumers. */
  eventsEnriched: string;
  /** Alerts raised by the processor (OOM kills, crash loops, sequence gaps...). */
  alerts: string;
}

export const DEFAULT_TOPIC_PREFIX = 'ktrail.';
export const DEFAULT_PARTITIONS = 6;

export function topicNames(prefix: string = DEFAULT_TOPIC_PREFIX): TopicNames {
  return {
    events: `${prefix}events`,
    containers: `${prefix}containers`,
    stats: `${prefix}stats`,
    deadletter: `${prefix}deadletter`,
    eventsEnriched: `${prefix}events.enriched`,
    alerts: `${prefix}alerts`,
  };
}

// kafkajs' ConfigResourceTypes.TOPIC. kafkajs is CommonJS and Node's ESM loader can't see
// that export by name (only Kafka, logLevel, CompressionTypes...), so the value is inlined.
const TOPIC_RESOURCE = 2;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * Per-topic settings. Everything else (retention of events, message size) is the broker's
 * default; these are the ones ktrail's correctness or operations depend on.
 */
function topicConfigs(names: TopicNames): Record<string, Record<string, string>> {
  return {
    [names.containers]: {
      'cleanup.policy': 'compact',
      // Keep every version of a container record for an hour before compaction may drop
      // older ones: the processor joins events by time against versioned metadata, and a
      // processor restarting within the hour rebuilds the same versions it had.
      'min.compaction.lag.ms': String(HOUR_MS),
      // The active segment is never compacted: roll hourly so compaction can happen at all
      // on a low-volume topic (the 1 GiB / 7 day defaults would keep everything for a week).
      'segment.ms': String(HOUR_MS),
      'min.cleanable.dirty.ratio': '0.1',
      // Tombstones (container gone for good) stay visible a day, so a processor that was
      // down for less than that still sees the deletion.
      'delete.retention.ms': String(DAY_MS),
    },
    [names.stats]: { 'retention.ms': String(7 * DAY_MS) },
    // Dead letters are evidence: keep them longer than the events they came from.
    [names.deadletter]: { 'retention.ms': String(30 * DAY_MS) },
    [names.alerts]: { 'retention.ms': String(7 * DAY_MS) },
  };
}

/** Settings that must hold on an existing topic too; ensureTopics fails when they don't. */
const REQUIRED_ON_EXISTING: readonly { topic: keyof TopicNames; setting: string }[] = [
  { topic: 'containers', setting: 'cleanup.policy' },
];

export interface EnsureTopicsOptions {
  /** Topic name prefix, 'ktrail.' by default. */
  prefix?: string;
  /** Partitions of every ktrail topic (events and containers must match), 6 by default. */
  partitions?: number;
  /** Copies per partition; unset: from the broker count (common/kafka-replication.ts). */
  replicationFactor?: number | undefined;
  /** How long createTopics waits for leaders, ms. */
  timeoutMs?: number;
}

export interface EnsureTopicsResult {
  names: TopicNames;
  created: string[];
  existing: string[];
  /** What topics created now got (existing ones keep theirs). */
  replication: Replication;
  /** Existing topics with fewer copies than `replication` asks for (created on fewer brokers). */
  fewerReplicas: string[];
}

/**
 * Creates the ktrail topics that are missing and checks the ones that exist. Idempotent
 * and safe to race with another process doing the same. Throws ConfigError when an
 * existing topic has a different partition count (co-partitioning of events and
 * containers would not hold) or the containers topic is not compacted.
 */
export async function ensureTopics(
  admin: Admin,
  options: EnsureTopicsOptions = {},
): Promise<EnsureTopicsResult> {
  const prefix = options.prefix ?? DEFAULT_TOPIC_PREFIX;
  const partitions = options.partitions ?? DEFAULT_PARTITIONS;
  if (!Number.isInteger(partitions) || partitions < 1)
    throw new ConfigError(`kafka.partitions: must be a positive integer, got ${partitions}`);
  const replication = await clusterReplication(admin, options.replicationFactor);

  const names = topicNames(prefix);
  const configs = topicConfigs(names);
  const wanted = Object.values(names);
  const present = new Set(await admin.listTopics());
  const missing = wanted.filter((topic) => !present.has(topic));
  const existing = wanted.filter((topic) => present.has(topic));
  // Check before creating anything: a mismatch must not leave half the topics at one
  // count and the new ones at another.
  if (existing.length > 0) await checkPartitions(admin, existing, partitions);

  if (missing.length > 0) {
    const topics: ITopicConfig[] = missing.map((topic) => ({
      topic,
      numPartitions: partitions,
      replicationFactor: replication.replicationFactor,
      configEntries: Object.entries({
        ...configs[topic],
        'min.insync.replicas': String(replication.minInsyncReplicas),
      }).map(([name, value]) => ({ name, value })),
    }));
    await createTopicsAndWait(admin, topics, options.timeoutMs ?? 30_000);
  }

  // Again for all: another process may have created some of them, with its own count.
  const metadata = await checkPartitions(admin, wanted, partitions);
  await checkRequiredConfigs(admin, names, configs);
  const fewerReplicas = metadata
    .filter((t) => (t.partitions[0]?.replicas.length ?? 0) < replication.replicationFactor)
    .map((t) => t.name);
  return { names, created: missing, existing, replication, fewerReplicas };
}

/**
 * createTopics, then wait until every partition has a leader in the metadata brokers hand
 * out. kafkajs' own `waitForLeaders` gives up on UNKNOWN_TOPIC_OR_PARTITION, which a KRaft
 * broker answers for a moment after creation (its metadata cache is updated
 * asynchronously; kafkajs #815, #1563), so ktrail waits itself. Resolves false when all
 * topics already existed (another process may have created them first).
 */
export async function createTopicsAndWait(
  admin: Admin,
  topics: ITopicConfig[],
  timeoutMs = 30_000,
): Promise<boolean> {
  const created = await admin.createTopics({ topics, waitForLeaders: false, timeout: timeoutMs });
  await waitForTopics(
    admin,
    topics.map((t) => t.topic),
    timeoutMs,
  );
  return created;
}

// What a KRaft broker answers for a moment after a topic was created: its metadata cache
// and its replica manager catch up with the controller asynchronously (KAFKA-15780).
const SETTLING = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION']);

/** The kafkajs error type behind an error, looking through its retry wrappers. */
export function kafkajsErrorType(err: unknown): string | undefined {
  let current = err as { type?: string; originalError?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; depth < 5 && current; depth++) {
    if (typeof current.type === 'string') return current.type;
    current = (current.originalError ?? current.cause) as typeof current;
  }
  return undefined;
}

/**
 * Waits until every partition of `topics` has a leader that actually serves it: metadata
 * names a leader, and ListOffsets (answered by that leader) succeeds. Metadata alone is
 * not enough on KRaft: a produce right after it can still get NOT_LEADER_FOR_PARTITION.
 */
export async function waitForTopics(admin: Admin, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    try {
      const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
      const leaderless = metadata.filter(
        (t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0),
      );
      if (leaderless.length === 0 && metadata.length === topics.length) {
        for (const topic of topics) await admin.fetchTopicOffsets(topic);
        return;
      }
      last = `no leader yet for ${leaderless.map((t) => t.name).join(', ')}`;
    } catch (err) {
      const type = kafkajsErrorType(err);
      if (type === undefined || !SETTLING.has(type)) throw err;
      last = type;
    }
    if (Date.now() > deadline)
      throw new TransientError(`topics not ready after ${timeoutMs} ms: ${last}`, { context: { topics } });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function checkPartitions(
  admin: Admin,
  topics: string[],
  partitions: number,
): Promise<ITopicMetadata[]> {
  const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
  const wrong = metadata
    .filter((t) => t.partitions.length !== partitions)
    .map((t) => `${t.name} has ${t.partitions.length}`);
  if (wrong.length > 0)
    throw new ConfigError(
      `kafka.partitions: expected ${partitions} partitions on every ktrail topic, but ${wrong.join(', ')}. ` +
        'Events and container metadata must be co-partitioned: set kafka.partitions to the existing ' +
        'count, or recreate the topics (deploy/local/kafka.sh clean for the local stack).',
      { context: { expected: partitions, wrong } },
    );
  return metadata;
}

async function checkRequiredConfigs(
  admin: Admin,
  names: TopicNames,
  configs: Record<string, Record<string, string>>,
): Promise<void> {
  const checks = REQUIRED_ON_EXISTING.map(({ topic, setting }) => ({ topic: names[topic], setting }));
  const topics = [...new Set(checks.map((c) => c.topic))];
  const described = await admin.describeConfigs({
    resources: topics.map((name) => ({
      type: TOPIC_RESOURCE,
      name,
      configNames: checks.map((c) => c.setting),
    })),
    includeSynonyms: false,
  });
  for (const { topic, setting } of checks) {
    const want = configs[topic]?.[setting];
    const actual = described.resources
      .find((r) => r.resourceName === topic)
      ?.configEntries.find((e) => e.configName === setting)?.configValue;
    if (want !== undefined && actual !== want)
      throw new ConfigError(
        `topic ${topic}: ${setting} is "${actual ?? 'unset'}", ktrail needs "${want}". ` +
          `Fix it with kafka-configs --alter --entity-type topics --entity-name ${topic} --add-config ${setting}=${want}.`,
        { context: { topic, setting, want, actual } },
      );
  }
}
