// An EventBatch envelope around test events, as a collector would send it (boot epoch set, so
// every event's wall-clock time is bootEpochNs + tsNs).
export const TEST_EPOCH_NS = 1_764_000_000_000_000_000n;

export function eventBatchValue(node: string, events: unknown[]) {
  return {
    node,
    bootId: 'boot-1',
    collectorVersion: 'test',
    sequence: 1n,
    producedAtNs: TEST_EPOCH_NS,
    bootEpochNs: TEST_EPOCH_NS,
    events,
  };
}
