// The processor's last act before it leaves the group on SIGTERM: wait until the group has
// committed everything that was in its partitions at that moment. `./ktrail stop` (and any
// ordered shutdown) stops the collectors first, so their final messages — the last events and
// the final stats record with the shutdown's drops — are in Kafka but maybe not yet read.
// Without this wait they would reach ClickHouse only when a processor next runs.
//
// Bounded by a deadline: a processor that cannot write (ClickHouse down) or is far behind
// leaves the rest to the next owner, which re-reads from the committed offsets; nothing is
// lost either way.
import type { Admin } from 'kafkajs';

export interface CatchUpResult {
  caughtUp: boolean;
  ms: number;
  /** Messages between the committed offset and the target, summed, when not caught up. */
  behind: number;
}

type Targets = Map<string, Map<number, bigint>>;

async function endOffsets(
  admin: Admin,
  topics: readonly string[],
  partitions: readonly number[],
): Promise<Targets> {
  const targets: Targets = new Map();
  for (const topic of topics) {
    const byPartition = new Map<number, bigint>();
    // An empty partition (low == high) needs nothing committed.
    for (const p of await admin.fetchTopicOffsets(topic))
      if (partitions.includes(p.partition) && p.high !== p.low) byPartition.set(p.partition, BigInt(p.high));
    targets.set(topic, byPartition);
  }
  return targets;
}

async function remaining(admin: Admin, groupId: string, targets: Targets): Promise<number> {
  const committed = await admin.fetchOffsets({ groupId, topics: [...targets.keys()] });
  let behind = 0;
  for (const [topic, byPartition] of targets) {
    const parts = committed.find((t) => t.topic === topic)?.partitions ?? [];
    for (const [partition, high] of byPartition) {
      const offset = BigInt(parts.find((x) => x.partition === partition)?.offset ?? '-1');
      if (offset < high) behind += Number(high - (offset < 0n ? 0n : offset));
    }
  }
  return behind;
}

/**
 * Resolves once `groupId` has committed, in every one of `partitions` of `topics`, at least the
 * end offset those partitions had when this was called, or when `timeoutMs` passed.
 */
export async function catchUpToEnd(
  admin: Admin,
  groupId: string,
  topics: readonly string[],
  partitions: readonly number[],
  timeoutMs: number,
  pollMs = 200,
): Promise<CatchUpResult> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let behind = Number.POSITIVE_INFINITY;
  try {
    const targets = await endOffsets(admin, topics, partitions);
    for (;;) {
      behind = await remaining(admin, groupId, targets);
      if (behind === 0 || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
    }
  } catch {
    // The broker is unreachable: nothing to wait for that could finish.
  }
  const ms = Date.now() - started;
  return { caughtUp: behind === 0, ms, behind: Number.isFinite(behind) ? behind : -1 };
}
