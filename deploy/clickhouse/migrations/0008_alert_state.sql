-- The processor's alert-rule state (crash-loop windows, last sequence per node and boot,
-- tcp windows) per consumer group and events partition, as of a committed batch: the
-- partition's next owner, after a rebalance or a restart, reads the newest row and goes on
-- where the last owner stopped (processor/src/alert-state.ts). One row per committed batch,
-- inserted under the batch's deduplication token; ReplacingMergeTree keeps the newest.
CREATE TABLE IF NOT EXISTS {{database}}.alert_state
(
  consumer_group LowCardinality(String),
  topic LowCardinality(String),
  partition UInt32,
  through_offset UInt64,
  state String CODEC(ZSTD(3)),
  saved_at_ns UInt64,
  time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(saved_at_ns), 'UTC')
)
ENGINE = ReplacingMergeTree(saved_at_ns)
ORDER BY (consumer_group, topic, partition)
TTL toDateTime(time) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};
