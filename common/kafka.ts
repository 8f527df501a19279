// Kafka plumbing shared by the collector, the processor, the local stack and the tests:
// one way to build a kafkajs client (logs into pino, retry settings chosen once), the
// ktrail topic names, and `ensureTopics`, which creates them idempotently and refuses to
// run on topics whose partition counts would break co-partitioning.
//
// Compression: kafkajs has only gzip built in. ktrail's producers write zstd (the collector's
// event batches, see collector/src/kafka-sink.ts), so importing this module registers a zstd
// codec (native/src/codec.cc through common/native-codec.ts) in kafkajs for the whole process:
// every ktrail process that talks to Kafka imports this file, so none of them meets a batch
// it cannot read (a codec registered in one process and not in another makes messages
// unreadable there). The addon is loaded on the first zstd batch, not at import.

import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { ConnectionOptions } from 'node:tls';
import kafkajs, {
  type Admin,
  CompressionTypes,
  type ITopicConfig,
  type ITopicMetadata,
  type Kafka,
  type KafkaConfig,
  type LogEntry,
  logLevel,
  type SASLOptions,
} from 'kafkajs';
import type { KtrailConfig } from './config.js';
import { ConfigError, TransientError } from './errors.js';
import { clusterReplication, type Replication } from './kafka-replication.js';
import { ExplainingKafka, kafkaSecurityOptions, warnInsecureKafka } from './kafka-security.js';
import { createThrottledWarn, type Logger } from './log.js';
import { loadCodecAddon } from './native-codec.js';

// kafkajs 2 warns on every producer that its default partitioner changed in 2.0. ktrail
// has no data written by kafkajs 1, so the warning is noise in every log and test run.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

export interface KafkaClientOptions {
  /** host:port bootstrap addresses. */
  brokers: readonly string[];
  clientId: string;
  ssl?: boolean | ConnectionOptions;
  sasl?: SASLOptions;
  /** Overrides for kafkajs' retry policy (see DEFAULT_RETRY). */
  retry?: KafkaConfig['retry'];
  /** kafkajs requestTimeout (default 30 s). */
  requestTimeoutMs?: number;
}

/**
 * The client options of the `kafka` config section for one component: its client id is the
 * configured one plus `-<role>` (ktrail-processor), so brokers' logs tell components apart.
 */
export function kafkaClientOptions(section: KtrailConfig['kafka'], role?: string): KafkaClientOptions {
  return {
    brokers: section.brokers,
    clientId: role === undefined ? section.clientId : `${section.clientId}-${role}`,
    requestTimeoutMs: section.requestTimeoutMs,
    ...kafkaSecurityOptions(section),
  };
}

/**
 * kafkajs retries each request with exponential backoff: 300 ms doubling up to 30 s, 8
 * times (~1 min in all), long enough to ride out a leader election or a broker restart.
 * Callers with their own backoff loop (the collector's delivery loop) pass shorter ones.
 */
export const DEFAULT_RETRY = { initialRetryTime: 300, maxRetryTime: 30_000, retries: 8 } as const;

const HOST_PORT = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** A kafkajs client whose log lines go through pino as `lib: kafkajs`, `ns: Consumer`. */
export function createKafka(options: KafkaClientOptions, logger: Logger): Kafka {
  fixKafkajsIdleTimer();
  if (options.brokers.length === 0)
    throw new ConfigError('kafka.brokers: at least one host:port is required', { context: { brokers: [] } });
  for (const broker of options.brokers)
    if (!HOST_PORT.test(broker))
      throw new ConfigError(`kafka.brokers: "${broker}" is not host:port (e.g. 127.0.0.1:19092)`, {
        context: { brokers: options.brokers },
      });
  if (options.clientId.length === 0) throw new ConfigError('kafka.clientId: must not be empty');

  const config: KafkaConfig = {
    brokers: [...options.brokers],
    clientId: options.clientId,
    // kafkajs' 1 s default is too tight for a loaded 2-core CI machine.
    connectionTimeout: 5_000,
    authenticationTimeout: 10_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    retry: { ...DEFAULT_RETRY, ...options.retry },
    logLevel: kafkajsLevel(logger.level),
    // `lib`, not `component`: the caller's component binding stays the one that counts.
    logCreator: pinoLogCreator(logger.child({ lib: 'kafkajs' })),
  };
  if (options.ssl !== undefined) config.ssl = options.ssl;
  if (options.sasl !== undefined) config.sasl = options.sasl;
  warnInsecureKafka(options, logger);
  return new ExplainingKafka(config, options);
}

function kafkajsLevel(pinoLevel: string): logLevel {
  switch (pinoLevel) {
    case 'trace':
    case 'debug':
      return logLevel.DEBUG;
    case 'info':
      return logLevel.INFO;
    case 'warn':
      return logLevel.WARN;
    case 'silent':
      return logLevel.NOTHING;
    default:
      return logLevel.ERROR;
  }
}

/** kafkajs' logCreator contract: called once per namespace-less root, then per log entry. */
/**
 * kafkajs lines that describe an expected state, not a fault: a broker electing leaders or
 * loading its group coordinator right after start, answered by a retry. And the idempotent
 * producer's warning about limited retries: ktrail's delivery loop owns retries (a send is
 * bounded so the buffer can count), a failed send may repeat a batch under the same per-node
 * sequence, and completeness_hourly counts such duplicates.
 */
const EXPECTED_STATES = [
  /not the leader for that topic-partition/i,
  /leadership election|leader not available|no leader for this topic-partition/i,
  /coordinator is (loading|not available)/i,
  /Limiting retries for the idempotent producer/i,
];

function pinoLogCreator(logger: Logger): () => (entry: LogEntry) => void {
  // A broker that just elected its leaders answers every in-flight request of every
  // partition with the same retriable error: one line per error per 10 s, with the count.
  const warnAttempt = createThrottledWarn(logger);
  return () =>
    ({ namespace, level, log }) => {
      // kafkajs puts its own timestamp and logger name in `log`; pino has both already.
      const { message, timestamp: _timestamp, logger: _logger, ...fields } = log;
      const bindings = namespace ? { ns: namespace, ...fields } : fields;
      const text = `${message} ${String(fields.error ?? '')}`;
      // A consumer crash stays an error whatever its cause: kafkajs restarts it, but it is news.
      if (
        level <= logLevel.WARN &&
        !message.startsWith('Crash') &&
        EXPECTED_STATES.some((re) => re.test(text))
      ) {
        logger.debug(bindings, message);
        return;
      }
      switch (level) {
        case logLevel.ERROR:
          // kafkajs logs every failed attempt of a request at ERROR from its Connection
          // ("Response ListOffsets ... not the leader", "connect ECONNREFUSED"), then
          // retries; what finally fails reaches the caller as an exception and is logged
          // there. Per-attempt lines are warnings, or a healthy leader election reads
          // like an outage.
          if (namespace === 'Connection')
            warnAttempt(`${namespace}:${String(fields.error ?? message)}`, bindings, message);
          else logger.error(bindings, message);
          break;
        case logLevel.WARN:
          logger.warn(bindings, message);
          break;
        case logLevel.INFO:
          logger.info(bindings, message);
          break;
        default:
          logger.debug(bindings, message);
      }
    };
}

// --- topics ----------------------------------------------------------------------------------

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

/**
 * kafkajs 2.2.4 re-arms a 1 ms timer forever on every idle broker connection
 * (RequestQueue.scheduleCheckPendingRequests with throttledUntil = -1: tulios/kafkajs#1556,
 * #1704; fix proposed in PR #1667, never released). Measured here: ~1,600 event-loop wake-ups
 * per second and ~3.5% of a core with nothing to send. The replacement below is that fix:
 * with no pending request and no throttle there is nothing to check, so no timer is set (a
 * new request either goes out at once or lands in `pending` and schedules the check itself).
 */
export function fixKafkajsIdleTimer(): void {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as {
    prototype: {
      throttledUntil: number;
      pending: unknown[];
      throttleCheckTimeoutId: NodeJS.Timeout | null;
      checkPendingRequests(): void;
      scheduleCheckPendingRequests(): void;
      ktrailPatched?: boolean;
    };
  };
  const proto = RequestQueue.prototype;
  if (proto.ktrailPatched) return;
  proto.ktrailPatched = true;
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: typeof proto) {
    if (this.throttleCheckTimeoutId) return;
    let scheduleAt = this.throttledUntil - Date.now();
    if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : 10;
    else if (scheduleAt <= 0) return;
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, scheduleAt);
  };
}

// --- codecs ----------------------------------------------------------------------------------

/**
 * zstd level for ktrail's producers. Measured on the collector's EventBatch messages (1 MB
 * produce requests): level 2 takes 8 ms per MB and keeps 49% of the bytes, where the gzip
 * level 1 used before took 21 ms per MB for 51%; level 1 is 6 ms for 56%, level 3 12 ms
 * for 48%. Any zstd reader decodes every level.
 */
export const ZSTD_LEVEL = 2;

/**
 * Registers the zstd codec in kafkajs, for the whole process, once: at this module's import
 * (see the top of the file). kafkajs looks a codec up per record batch, so the addon is
 * loaded when the first zstd batch is written or read. Brokers accept zstd from Kafka 2.1 on
 * (produce v7, which kafkajs uses against them).
 */
function registerKafkaCodecs(): void {
  const codec = {
    compress: (encoder: { buffer: Buffer }) => loadCodecAddon().zstdCompress(encoder.buffer, ZSTD_LEVEL),
    decompress: (buffer: Buffer) => loadCodecAddon().zstdDecompress(buffer),
  };
  kafkajs.CompressionCodecs[CompressionTypes.ZSTD] = () => codec;
}

registerKafkaCodecs();

let nativeCrc: boolean | undefined;

/**
 * kafkajs computes the CRC-32C of every record batch it produces in JavaScript, a table
 * lookup per byte (measured: ~3% of the collector's main thread at full speed, 3-4 ms per
 * MB against 0.14 ms for the addon's SSE4.2 version). kafkajs has no hook for it, so this
 * puts the addon's function in the place of kafkajs' `protocol/recordBatch/crc32C` module
 * (index.js: buffer => unsigned CRC) in the require cache, before kafkajs' record batch
 * encoder (loaded lazily, on the first produce request) binds it. Conditions, all checked:
 * the module is where kafkajs 2.2.x keeps it, the encoder has not bound the JS one yet, and
 * the native result equals kafkajs' own on a test vector and on random bytes. Otherwise
 * kafkajs keeps its own function (correct, slower) and this returns false.
 * test/unit/kafka-codecs.test.ts checks the installed kafkajs takes it; the broker verifies
 * every batch's CRC, so the integration tests would fail on a wrong one.
 */
export function useNativeCrc32c(): boolean {
  if (nativeCrc !== undefined) return nativeCrc;
  nativeCrc = false;
  const require = createRequire(import.meta.url);
  let crcPath: string;
  let batchPath: string;
  try {
    crcPath = require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js');
    batchPath = require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js');
  } catch {
    return false; // another kafkajs layout
  }
  if (require.cache[batchPath] !== undefined) return false; // already bound to the JS one
  const js = require(crcPath) as unknown;
  const entry = require.cache[crcPath];
  if (typeof js !== 'function' || entry === undefined) return false;
  let crc32c: (buf: Uint8Array) => number;
  try {
    crc32c = loadCodecAddon().crc32c;
  } catch {
    return false; // addon not built: kafkajs keeps its own
  }
  const probe = randomBytes(4_099);
  const vector = Buffer.from('123456789');
  if (crc32c(vector) !== 0xe3069283 || crc32c(probe) !== (js as (b: Buffer) => number)(probe)) return false;
  entry.exports = (buffer: Buffer): number => crc32c(buffer);
  nativeCrc = true;
  return true;
}

/** useNativeCrc32c for a producing component, saying so in its log when kafkajs keeps its own. */
export function useNativeCrc32cOrWarn(log: Logger): void {
  if (!useNativeCrc32c())
    log.warn('kafkajs computes record batch CRC-32C in JavaScript (native one not installed)');
}
