// Alert-rule state that survives a rebalance and a restart. Each partition's AlertEngine
// is saved with every committed batch, after the batch's outputs are published and before
// its offset is committed, and restored by the partition's next owner before its first
// event: a crash loop counted by one member is finished by the next, and a sequence gap
// across a hand-over is still seen.
//
// Where: the ClickHouse table alert_state (migration 0008), one row per batch under the
// batch's deduplication token, read back with one query at assignment. Why not a compacted
// Kafka topic: reading back one partition's newest value takes a consumer (kafkajs has no
// fetch at an offset outside a group) and a restore phase per assignment; the table costs
// one small insert per batch in the write path that already inserts every table, and a
// snapshot lands exactly when the batch's rows do (docs/processor.md, "Alert state").
//
// Consistency with the committed offset C of the partition (the state covers messages up
// to `through`):
// - through = C - 1: the usual case.
// - C <= through <= the recorded cut: saved, then the member died before its commit. The
//   new owner replays that cut onto a state that has it; the rules are idempotent on it.
// - through < C - 1: a save failed (skipped, counted), or a member without a store committed
//   since: the windows are kept, the sequences are not (they would raise false data_loss).
// - through beyond the recorded cut: not this topic's offsets (recreated): ignored.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../../common/log.js';
import type { AlertEngine, AlertSnapshot } from './alerts.js';
import { describeClickHouse } from './clickhouse/client.js';
import { insertOnce } from './clickhouse/writer.js';
import { asRows } from './event-columns.js';
import { type CutBatch, decodeCut, dedupToken } from './partition-batch.js';
import { EVENT_BATCHES_TABLE } from './rows.js';

export const ALERT_STATE_TABLE = 'alert_state';
const FORMAT = 1;

export interface AlertStateKey {
  group: string;
  topic: string;
  partition: number;
}

export interface SavedAlertState {
  throughOffset: bigint;
  /** JSON of { v, snapshot: AlertSnapshot }. */
  state: string;
}

/** Where snapshots live. Both calls make one attempt and throw on failure (the keeper retries). */
export interface AlertStateStore {
  load(key: AlertStateKey): Promise<SavedAlertState | undefined>;
  save(key: AlertStateKey, saved: SavedAlertState, dedupToken: string): Promise<void>;
}

const quote = (s: string) => `'${s.replace(/['\\]/g, '\\$&')}'`;

export function clickHouseAlertStateStore(client: ClickHouseClient): AlertStateStore {
  const table = () => {
    const database = describeClickHouse(client)?.database;
    return database === undefined ? ALERT_STATE_TABLE : `${database}.${ALERT_STATE_TABLE}`;
  };
  return {
    async load(key) {
      const rs = await client.query({
        query: `SELECT toString(through_offset) AS through, state FROM ${table()}
          WHERE consumer_group = ${quote(key.group)} AND topic = ${quote(key.topic)} AND partition = ${key.partition}
          ORDER BY saved_at_ns DESC LIMIT 1`,
        format: 'JSONEachRow',
      });
      const [row] = await rs.json<{ through: string; state: string }>();
      return row === undefined ? undefined : { throughOffset: BigInt(row.through), state: row.state };
    },
    async save(key, saved, token) {
      const row = {
        consumer_group: key.group,
        topic: key.topic,
        partition: key.partition,
        through_offset: String(saved.throughOffset),
        state: saved.state,
        saved_at_ns: String(BigInt(Date.now()) * 1_000_000n),
      };
      // One attempt: save() below is the retry loop (it stops once the partition is lost).
      // Shareable: a snapshot written twice is harmless (restore reads the newest).
      await insertOnce(client, { table: ALERT_STATE_TABLE, rows: [row], dedupToken: token, shareable: true });
    },
  };
}

/** The committed position of a partition as the group's offset fetch returns it. */
export interface CommittedPosition {
  /** Next offset to read; '-1' when nothing was committed. */
  offset: string;
  metadata?: string | null;
}

export interface AlertStateOptions {
  /** Unset: state lives in memory only, rebuilt empty on every assignment. */
  store: AlertStateStore | undefined;
  group: string;
  topic: string;
  log: Logger;
  /** A snapshot not saved or not restored: that partition's alerts may repeat or be missed. */
  countFailure(): void;
  /** Restore retries until this long, then starts the partition with empty state. */
  restoreTimeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

const SAVE_ATTEMPTS = 3;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The processor's side of alert state: restore on assignment, save with each committed cut. */
export class AlertStateKeeper {
  constructor(private readonly o: AlertStateOptions) {}

  /**
   * Fills a new partition's engine from the newest snapshot, before its first event. Gives
   * up after restoreTimeoutMs (the partition then starts empty, counted): ingestion must
   * not wait on alert state for longer than on the containers topic.
   */
  async restore(
    partition: number,
    engine: AlertEngine,
    committed: CommittedPosition | undefined,
    current: () => boolean,
  ): Promise<void> {
    const store = this.o.store;
    if (store === undefined) return;
    const key = this.key(partition);
    const deadline = Date.now() + this.o.restoreTimeoutMs;
    let delay = this.o.retryInitialMs;
    let saved: SavedAlertState | undefined;
    for (;;) {
      try {
        saved = await store.load(key);
        break;
      } catch (err) {
        if (!current()) return;
        if (Date.now() + delay > deadline) {
          this.o.countFailure();
          this.o.log.error(
            { err: (err as Error).message, partition },
            'alert state not readable; the partition starts with empty alert state',
          );
          return;
        }
        this.o.log.warn(
          { err: (err as Error).message, partition, delayMs: delay },
          'reading alert state failed; retrying',
        );
        await sleep(delay);
        delay = Math.min(delay * 2, this.o.retryMaxMs);
      }
    }
    if (saved === undefined || !current()) return;
    const next = committed === undefined ? 0n : BigInt(committed.offset) < 0n ? 0n : BigInt(committed.offset);
    const recordedCut = decodeCut(committed?.metadata);
    const newest = recordedCut !== undefined && recordedCut > next - 1n ? recordedCut : next - 1n;
    const fields = { partition, through: String(saved.throughOffset), committed: String(next) };
    if (saved.throughOffset > newest) {
      this.o.log.warn(fields, 'alert state is ahead of the committed offsets (topic recreated?); ignored');
      return;
    }
    const stale = saved.throughOffset < next - 1n;
    let snapshot: AlertSnapshot;
    try {
      snapshot = decodeState(saved.state);
    } catch (err) {
      this.o.countFailure();
      this.o.log.error({ ...fields, err: (err as Error).message }, 'alert state unreadable; ignored');
      return;
    }
    engine.restore(snapshot, { sequences: !stale });
    if (stale) {
      this.o.countFailure();
      this.o.log.warn(fields, 'alert state older than the committed offset; sequence baselines dropped');
    } else this.o.log.info({ ...fields, workloads: snapshot.crash.windows.length }, 'alert state restored');
  }

  /**
   * Saves the engine's state as of `cut` (its rules ran over the cut's rows just before),
   * under the cut's token. A few attempts, then skipped and counted: the next cut's snapshot
   * is whole again, and a stale one is detected on restore.
   */
  async save(partition: number, engine: AlertEngine, cut: CutBatch, owned: () => boolean): Promise<void> {
    engine.commitSequences(asRows(cut.tables.get(EVENT_BATCHES_TABLE) ?? []));
    const store = this.o.store;
    if (store === undefined) return;
    const state = encodeState(engine.snapshot());
    const token = dedupToken(ALERT_STATE_TABLE, this.o.topic, partition, cut.firstOffset, cut.lastOffset);
    let delay = this.o.retryInitialMs;
    for (let attempt = 1; owned(); attempt++) {
      try {
        await store.save(this.key(partition), { throughOffset: cut.lastOffset, state }, token);
        return;
      } catch (err) {
        if (attempt >= SAVE_ATTEMPTS) {
          this.o.countFailure();
          this.o.log.error(
            { err: (err as Error).message, partition, through: String(cut.lastOffset) },
            'alert state not saved; a new owner of this partition would start from an older one',
          );
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, this.o.retryMaxMs);
      }
    }
  }

  private key(partition: number): AlertStateKey {
    return { group: this.o.group, topic: this.o.topic, partition };
  }
}

export function encodeState(snapshot: AlertSnapshot): string {
  return JSON.stringify({ v: FORMAT, snapshot });
}

export function decodeState(text: string): AlertSnapshot {
  const parsed = JSON.parse(text) as { v?: number; snapshot?: AlertSnapshot };
  if (parsed.v !== FORMAT || parsed.snapshot === undefined)
    throw new Error(`alert state format ${String(parsed.v)}, this processor reads ${FORMAT}`);
  return parsed.snapshot;
}
