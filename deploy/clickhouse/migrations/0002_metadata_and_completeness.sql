-- Container dimension: one row per ContainerRecord (schemas/ContainerRecord.avsc, fields in
-- snake_case). ReplacingMergeTree keeps the newest version per (node, cgroup, container) on
-- merge; read with FINAL or through containers_latest (0004).
CREATE TABLE IF NOT EXISTS {{database}}.containers
(
  node LowCardinality(String),
  cgroup_id UInt64,
  cgroup_path String CODEC(ZSTD(3)),
  runtime LowCardinality(String),
  container_id String,
  name LowCardinality(String),
  image LowCardinality(String),
  image_id String DEFAULT '',
  labels Map(String, String),
  pod_uid String DEFAULT '',
  pod_name LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload_kind LowCardinality(String) DEFAULT '',
  workload_name LowCardinality(String) DEFAULT '',
  -- Requests and limits: NULL = not set (distinct from 0).
  cpu_request_millis Nullable(UInt64),
  cpu_limit_millis Nullable(UInt64),
  memory_request_bytes Nullable(UInt64),
  memory_limit_bytes Nullable(UInt64),
  started_at_ns Nullable(UInt64),
  stopped_at_ns Nullable(UInt64),
  updated_at_ns UInt64,
  state LowCardinality(String) DEFAULT 'UNKNOWN',
  started_at Nullable(DateTime64(9, 'UTC')) MATERIALIZED fromUnixTimestamp64Nano(toInt64(started_at_ns), 'UTC'),
  stopped_at Nullable(DateTime64(9, 'UTC')) MATERIALIZED fromUnixTimestamp64Nano(toInt64(stopped_at_ns), 'UTC'),
  updated_at DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(updated_at_ns), 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at_ns)
ORDER BY (node, cgroup_id, container_id)
TTL toDateTime(updated_at) + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- One row per EventBatch message the processor consumed: the per-node sequence numbers
-- that completeness is computed from. Tiny (one row per batch), so it keeps the rollup TTL.
CREATE TABLE IF NOT EXISTS {{database}}.event_batches
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  sequence UInt64 CODEC(Delta, ZSTD(1)),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  events UInt32 CODEC(T64, ZSTD(1)),
  collector_version LowCardinality(String) DEFAULT '',
  kafka_partition UInt32 DEFAULT 0,
  kafka_offset UInt64 DEFAULT 0 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (node, boot_id, sequence)
TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- CollectorStats (schemas/CollectorStats.avsc): what each collector sent, dropped and why,
-- per stats interval. `time` is derived from interval_end_ns.
CREATE TABLE IF NOT EXISTS {{database}}.collector_stats
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  collector_version LowCardinality(String),
  first_sequence Nullable(UInt64),
  last_sequence Nullable(UInt64),
  interval_start_ns UInt64,
  interval_end_ns UInt64,
  events_by_kind Map(LowCardinality(String), UInt64),
  kernel_drops_by_program Map(LowCardinality(String), UInt64),
  buffer_drops_by_reason Map(LowCardinality(String), UInt64),
  malformed_records UInt64,
  events_delivered UInt64,
  bytes_sent UInt64,
  oldest_unsent_age_ms UInt64,
  time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(interval_end_ns), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (node, boot_id, interval_end_ns)
TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- Messages the processor could not use (schemas/DeadLetter.avsc). raw is the original
-- Kafka value, base64. `time` is derived from failed_at_ns.
CREATE TABLE IF NOT EXISTS {{database}}.dead_letters
(
  source_topic LowCardinality(String),
  source_partition UInt32,
  source_offset UInt64,
  reason LowCardinality(String),
  error String,
  raw String CODEC(ZSTD(3)),
  consumer_group LowCardinality(String) DEFAULT '',
  failed_at_ns UInt64,
  time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(failed_at_ns), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- Completeness per node, boot and hour: "how much of this hour did we lose, where".
-- batches_missing: holes in the per-node sequence, charged to the hour of the batch after
-- the hole; batches_duplicated: the same sequence number seen more than once.
CREATE VIEW IF NOT EXISTS {{database}}.completeness_hourly AS
SELECT
  node,
  boot_id,
  toStartOfHour(time) AS hour,
  uniqExact(sequence) AS batches_received,
  count() - uniqExact(sequence) AS batches_duplicated,
  sum(gap) AS batches_missing,
  sum(events) AS events_received,
  min(sequence) AS first_sequence,
  max(sequence) AS last_sequence
FROM
(
  SELECT
    node,
    boot_id,
    time,
    sequence,
    events,
    greatest(toInt64(sequence) - toInt64(lagInFrame(sequence, 1, sequence) OVER w) - 1, 0) AS gap
  FROM {{database}}.event_batches
  WINDOW w AS (PARTITION BY node, boot_id ORDER BY sequence ASC ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
GROUP BY node, boot_id, hour;

-- What the collectors themselves dropped per hour (kernel ring buffers, their Kafka buffer).
CREATE VIEW IF NOT EXISTS {{database}}.collector_drops_hourly AS
SELECT
  node,
  boot_id,
  toStartOfHour(time) AS hour,
  sum(arraySum(mapValues(kernel_drops_by_program))) AS kernel_drops,
  sum(arraySum(mapValues(buffer_drops_by_reason))) AS buffer_drops,
  sum(malformed_records) AS malformed_records,
  sum(events_delivered) AS events_delivered
FROM {{database}}.collector_stats
GROUP BY node, boot_id, hour;
