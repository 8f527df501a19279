// Kafka plumbing shared by the collector, the processor, the local stack and the tests:
// one way to build a kafkajs client (logs into pino, retry settings chosen once), kafkajs'
// idle-timer fix and the zstd codec. The topics themselves are kafka-topics.ts.
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
  CompressionTypes,
  type Kafka,
  type KafkaConfig,
  type LogEntry,
  logLevel,
  type SASLOptions,
} from 'kafkajs';
import type { KtrailConfig } from './config.js';
import { ConfigError } from './errors.js';
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
 * loading its group coordinator right after start (or a coordinator that moved), answered
 * by a retry. And the idempotent
 * producer's warning about limited retries: ktrail's delivery loop owns retries (a send is
 * bounded so the buffer can count), a failed send may repeat a batch under the same per-node
 * sequence, and completeness_hourly counts such duplicates.
 */
const EXPECTED_STATES = [
  /not the leader for that topic-partition/i,
  /leadership election|leader not available|no leader for this topic-partition/i,
  /coordinator is (loading|not available)|not the correct coordinator/i,
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

/**
 * kafkajs 2.2.4 keeps two timers running on every idle broker connection (RequestQueue):
 * - It re-arms a 1 ms timer forever (scheduleCheckPendingRequests with throttledUntil = -1:
 *   tulios/kafkajs#1556, #1704; fix proposed in PR #1667, never released): ~1,600 event-loop
 *   wake-ups per second and ~3.5% of a core with nothing to send. The replacement below is
 *   that fix: with no pending request and no throttle there is nothing to check, so no timer
 *   is set (a new request either goes out at once or lands in `pending` and schedules the
 *   check itself).
 * - It checks in-flight requests for their timeout every 100 ms from connect to disconnect,
 *   whether any is in flight or not: ten JavaScript wake-ups a second per connection, about a
 *   tenth of a percent of a core for an idle collector. Here the same check, at the same
 *   period, runs only while a request is in flight.
 */
export function fixKafkajsIdleTimer(): void {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as {
    prototype: KafkajsRequestQueue;
  };
  const proto = RequestQueue.prototype;
  if (proto.ktrailPatched) return;
  proto.ktrailPatched = true;
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: KafkajsRequestQueue) {
    if (this.throttleCheckTimeoutId) return;
    let scheduleAt = this.throttledUntil - Date.now();
    if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : 10;
    else if (scheduleAt <= 0) return;
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, scheduleAt);
  };

  // Connect calls this: from then on, requests sent start the timeout checks.
  proto.scheduleRequestTimeoutCheck = function scheduleRequestTimeoutCheck(this: KafkajsRequestQueue) {
    if (!this.enforceRequestTimeout) return;
    this.destroy();
    this.ktrailTimeoutChecks = true;
  };
  const sendSocketRequest = proto.sendSocketRequest;
  proto.sendSocketRequest = function (this: KafkajsRequestQueue, request: unknown) {
    sendSocketRequest.call(this, request);
    if (this.ktrailTimeoutChecks && this.inflight.size > 0 && this.requestTimeoutIntervalId == null)
      startTimeoutChecks(this);
  };
  const destroy = proto.destroy;
  proto.destroy = function (this: KafkajsRequestQueue) {
    destroy.call(this);
    this.requestTimeoutIntervalId = null;
  };
}

interface KafkajsSocketRequest {
  sentAt: number;
  requestTimeout: number;
  timeoutRequest(): void;
}

interface KafkajsRequestQueue {
  throttledUntil: number;
  pending: unknown[];
  inflight: Map<number, KafkajsSocketRequest>;
  requestTimeout: number;
  enforceRequestTimeout: boolean;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  requestTimeoutIntervalId: NodeJS.Timeout | null | undefined;
  isConnected(): boolean;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
  scheduleRequestTimeoutCheck(): void;
  sendSocketRequest(request: unknown): void;
  destroy(): void;
  ktrailPatched?: boolean;
  ktrailTimeoutChecks?: boolean;
}

/** kafkajs' own timeout check (RequestQueue.scheduleRequestTimeoutCheck), ending once nothing is in flight. */
function startTimeoutChecks(queue: KafkajsRequestQueue): void {
  const timer = setInterval(
    () => {
      for (const request of queue.inflight.values())
        if (Date.now() - request.sentAt > request.requestTimeout) request.timeoutRequest();
      if (!queue.isConnected()) queue.destroy();
      else if (queue.inflight.size === 0) {
        // Only this timer: destroy() would also cancel a throttled queue's pending check.
        clearInterval(timer);
        queue.requestTimeoutIntervalId = null;
      }
    },
    Math.min(queue.requestTimeout, 100),
  );
  queue.requestTimeoutIntervalId = timer;
}

/**
 * kafkajs grows every encoder (record, records, batch, request: each produce request passes
 * through several) with `Buffer.alloc`, zero-filling memory it then overwrites: at 10k
 * events/s zero-filling and page faults were ~10% of the collector's main thread. Bytes past
 * `offset` are never read (`buffer` is `buf.slice(0, offset)`), so the growth here uses
 * `Buffer.allocUnsafe`, same sizes, same copy. test/unit/kafka-codecs.test.ts compares the
 * bytes of a produce request with kafkajs' own encoder.
 */
export function fixKafkajsEncoderZeroFill(): void {
  const require = createRequire(import.meta.url);
  const Encoder = require('kafkajs/src/protocol/encoder.js') as {
    nextPowerOfTwo(value: number): number;
    prototype: {
      buf: Buffer;
      offset: number;
      ensureAvailable(length: number): void;
      ktrailPatched?: boolean;
    };
  };
  const proto = Encoder.prototype;
  if (proto.ktrailPatched) return;
  proto.ktrailPatched = true;
  proto.ensureAvailable = function ensureAvailable(this: typeof proto, length: number) {
    if (this.offset + length <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(this.offset + length));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
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
