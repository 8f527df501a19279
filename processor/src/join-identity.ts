// The join identities an event row can take (its join columns and the record behind them),
// one shared frozen object per container record, so a batch's rows point at a few objects
// instead of carrying the columns each (event-columns.ts keeps one index per row).
import type { ContainerMeta } from './metadata-table.js';
import type { EventRow } from './partition-batch.js';
import { type JoinIdentity, UNJOINED } from './rows.js';
import { HOST_IDENTITY, identityColumns } from './workload.js';

const joinedIdentities = new WeakMap<ContainerMeta, JoinIdentity>();
const pendingIdentities = new WeakMap<ContainerMeta, JoinIdentity>();
/** The identity of the host's rows: not in any container, their workload `host`. */
export const HOST_JOIN: JoinIdentity = Object.freeze({
  ...HOST_IDENTITY,
  join_state: 'host',
  meta: undefined,
});

/** The join identity of rows joined with `meta` (join_state 'joined'): one object per record. */
export function joinedIdentity(meta: ContainerMeta): JoinIdentity {
  let id = joinedIdentities.get(meta);
  if (id === undefined) {
    id = Object.freeze({ ...identityColumns(meta), join_state: 'joined', meta });
    joinedIdentities.set(meta, id);
  }
  return id;
}

/**
 * The identity of a row whose container no record describes yet, but whose cgroup a record
 * knows by its path (the collector's first record of a new cgroup): it keeps that container
 * id, and rules get the record (the crash-loop rule waits longer for the name); join_state
 * stays 'pending'.
 */
export function pendingIdentity(known: ContainerMeta): JoinIdentity {
  let id = pendingIdentities.get(known);
  if (id === undefined) {
    id = Object.freeze({ ...UNJOINED, container_id: known.containerId, meta: known });
    pendingIdentities.set(known, id);
  }
  return id;
}

/** Fills the join columns of a row from its container record (join_state 'joined'). */
export function applyJoin(row: EventRow, meta: ContainerMeta): void {
  row.$id = joinedIdentity(meta);
}

/** A row still waiting whose cgroup a record knows by path only (pendingIdentity). */
export function markPending(row: EventRow, known: ContainerMeta): void {
  row.$id = pendingIdentity(known);
}

/** Marks a row as the host's: not in any container, its workload `host`. */
export function applyHost(row: EventRow): void {
  row.$id = HOST_JOIN;
}
