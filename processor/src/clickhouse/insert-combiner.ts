// Group commit for inserts: while an insert into a table is in flight, the shareable inserts
// into that table that arrive wait, and go together as one statement when it ends. Every
// insert costs ClickHouse a part (and one per materialized view), whatever its rows: at a
// trickle that fixed cost is most of the processor's CPU, and under load the partitions'
// cuts queue behind each other on chDB's one statement at a time. Combining what would have
// queued anyway (after a 5 ms gathering wait on an idle table) turns N partitions' cuts into
// about one insert per table.
//
// Only inserts whose caller checks, before any retry, which of its rows landed may share a
// statement (InsertBatchParams.shareable): the combined statement carries its own token, so
// a member that retries alone is not deduplicated against it by token, but by that check
// (table-insert.ts pendingRows). A combined statement is one block, so it lands whole or not
// at all. When ClickHouse rejects it as bad data, each member is inserted alone, so the
// rejection reaches only the members whose rows it is about.
import { PoisonError } from '../../../common/errors.js';
import { asRows, EventColumns } from '../event-columns.js';
import type { InsertBatchParams, InsertResult } from './writer.js';

export interface InsertStatements {
  /** Statements sent to ClickHouse. */
  statements: number;
  /** Inserts that shared a statement with another (counted once each). */
  shared: number;
}

interface Member {
  params: InsertBatchParams;
  resolve(result: InsertResult): void;
  reject(err: unknown): void;
}

interface TableLane {
  busy: boolean;
  waiting: Member[];
}

/**
 * A statement never grows past this many rows (a batch can reach twice batchMaxRows alone):
 * far below min_insert_block_size_rows/bytes, so it stays one block.
 */
export const MAX_SHARED_ROWS = 100_000;
/**
 * How long an insert into an idle table waits for partners: partitions cut together
 * (PipelineDeps.cutAlongside) reach their inserts a few ms apart, after their own commits.
 */
export const GATHER_MS = 5;

/** Several inserts' rows as one: one kind's columns stay columns. */
function joinRows(parts: InsertBatchParams['rows'][]): InsertBatchParams['rows'] {
  const columns = parts.filter((p): p is EventColumns => p instanceof EventColumns);
  if (columns.length === parts.length && columns.every((c) => c.layout === columns[0]?.layout))
    return EventColumns.concat(columns);
  return parts.flatMap((p) => asRows(p));
}

/** Wraps one insert function (one attempt, classified errors) with per-table group commit. */
export function combineInserts(
  insertOne: (params: InsertBatchParams) => Promise<InsertResult>,
  maxRows = MAX_SHARED_ROWS,
  gatherMs = GATHER_MS,
): { insert(params: InsertBatchParams): Promise<InsertResult>; counts: InsertStatements } {
  const counts: InsertStatements = { statements: 0, shared: 0 };
  const lanes = new Map<string, TableLane>();
  const alone = (params: InsertBatchParams) => {
    counts.statements++;
    return insertOne(params);
  };

  async function send(members: Member[]): Promise<void> {
    if (members.length === 1) {
      const m = members[0] as Member;
      await alone(m.params).then(m.resolve, m.reject);
      return;
    }
    const first = (members[0] as Member).params;
    const rows = joinRows(members.map((m) => m.params.rows));
    try {
      const result = await alone({
        table: first.table,
        rows,
        dedupToken: members.map((m) => m.params.dedupToken).join('|'),
      });
      counts.shared += members.length;
      for (const m of members) m.resolve({ ...result, rows: m.params.rows.length });
    } catch (err) {
      if (!(err instanceof PoisonError)) {
        for (const m of members) m.reject(err);
        return;
      }
      // Whose rows were refused is not known: each member on its own says.
      for (const m of members) await alone(m.params).then(m.resolve, m.reject);
    }
  }

  /** Sends the lane's next group (up to maxRows, at least one insert) until none is waiting. */
  async function drain(lane: TableLane): Promise<void> {
    while (lane.waiting.length > 0) {
      let rows = 0;
      let n = 0;
      for (const m of lane.waiting) {
        if (n > 0 && rows + m.params.rows.length > maxRows) break;
        rows += m.params.rows.length;
        n++;
      }
      await send(lane.waiting.splice(0, n));
    }
    lane.busy = false;
  }

  return {
    counts,
    insert(params) {
      if (params.shareable !== true) return alone(params);
      let lane = lanes.get(params.table);
      if (lane === undefined) {
        lane = { busy: false, waiting: [] };
        lanes.set(params.table, lane);
      }
      const result = new Promise<InsertResult>((resolve, reject) =>
        lane.waiting.push({ params, resolve, reject }),
      );
      if (!lane.busy) {
        lane.busy = true;
        if (gatherMs > 0) setTimeout(() => void drain(lane), gatherMs);
        else void drain(lane);
      }
      return result;
    },
  };
}
