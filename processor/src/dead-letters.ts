// Dead letters: what a message that could not be handled becomes, bounded so that it can
// always be written. `raw` is cut at MAX_DEAD_LETTER_RAW_BYTES (a message near the broker's
// limit, wrapped in a DeadLetter, would exceed it and could never be produced); the whole
// source's size and, when cut, its SHA-256 stay so the original can still be found.
import { createHash } from 'node:crypto';
import { PoisonError } from '../../common/errors.js';
import type { DeadLetter } from '../../schemas/types.js';

export const MAX_DEAD_LETTER_RAW_BYTES = 256 * 1024;
/** Error texts can quote a whole row or value: keep the start, where the reason is. */
export const MAX_DEAD_LETTER_ERROR_CHARS = 4096;

/** Reasons the processor gives itself (the codec's are unknown_schema, undecodable, out_of_range, ...). */
export const REASON = {
  /** ClickHouse refused the message's rows as bad data. */
  insertRejected: 'insert_rejected',
  /** The message's enriched or alerts output could not be built. */
  outputFailed: 'output_failed',
  /** A Kafka message without a value (a tombstone) where a record was expected. */
  nullValue: 'null_value',
  /** A Kafka message whose value has 0 bytes. */
  emptyValue: 'empty_value',
} as const;

export type DeadLetterSource = {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | null;
  consumerGroup: string;
};

/** The message value an Avro record is expected in; null and 0 bytes are poison, each with its own reason. */
export function requireValue(value: Buffer | null): Buffer {
  if (value === null)
    throw new PoisonError('message value is null (a tombstone); a record was expected', {
      context: { reason: REASON.nullValue },
    });
  if (value.length === 0)
    throw new PoisonError('message value is empty (0 bytes)', { context: { reason: REASON.emptyValue } });
  return value;
}

/** The dead-letter reason class of an error: PoisonError's own, else `fallback`. */
export function reasonOf(err: unknown, fallback = 'undecodable'): string {
  return err instanceof PoisonError && typeof err.context.reason === 'string' ? err.context.reason : fallback;
}

/** A DeadLetter with `raw` and `error` bounded (see the file comment). */
export function boundedDeadLetter(
  source: DeadLetterSource,
  reason: string,
  error: string,
  raw: Buffer,
  nowMs = Date.now(),
): DeadLetter {
  const cut = raw.length > MAX_DEAD_LETTER_RAW_BYTES;
  return {
    sourceTopic: source.topic,
    sourcePartition: source.partition,
    sourceOffset: source.offset,
    key: source.key,
    reason,
    error:
      error.length > MAX_DEAD_LETTER_ERROR_CHARS ? `${error.slice(0, MAX_DEAD_LETTER_ERROR_CHARS)}…` : error,
    // A copy when cut: the slice must not keep the whole source alive.
    raw: cut ? Buffer.from(raw.subarray(0, MAX_DEAD_LETTER_RAW_BYTES)) : raw,
    consumerGroup: source.consumerGroup,
    failedAtNs: BigInt(nowMs) * 1_000_000n,
    rawSize: BigInt(raw.length),
    rawSha256: cut ? createHash('sha256').update(raw).digest('hex') : null,
  };
}
