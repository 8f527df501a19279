-- One rollup table instead of a chain of three. In 0003 every insert into a sample table ran
-- three materialized views in a row (sample -> usage_1m -> usage_1h -> usage_1d), each writing
-- a part of its own. Each level costs ~15 ms of CPU per insert however few rows it carries
-- (measured on chDB 26.7: a 1-row insert into cpu_sample took 57-71 ms with the chain, 31-34 ms
-- with this design, 15-16 ms with no view at all; docs/clickhouse.md), and the processor makes
-- an insert per table per partition every batchMaxMs: at a few hundred events/s that fixed
-- cost was most of the process's CPU.
--
-- Now one view per sample table aggregates its block per minute and fans each minute out to
-- the three resolutions (ARRAY JOIN), then folds them into `usage`, one AggregatingMergeTree
-- keyed by (resolution, node, cgroup_id, bucket): one view and one part per insert. The
-- per-minute pre-aggregation keeps the fan-out to 3 rows per (cgroup, minute), not per sample.
-- usage_1m, usage_1h and usage_1d stay, as views over their resolution (the first key column,
-- so a read touches only its own range): queries written against 0003 keep working.
--
-- Upgrade of a store built by 0003: the old views stop feeding the chain, rows the old tables
-- hold are copied into `usage` (under a fixed dedup token: a re-run after a failure does not
-- copy twice; and only while the name is still the old table), then each old table is
-- replaced by its view. A processor of the old version inserting during the upgrade would
-- miss rollups for those inserts (migrations run before a processor consumes).

CREATE TABLE IF NOT EXISTS {{database}}.usage
(
  resolution UInt32, -- seconds: 60, 3600 or 86400

  node LowCardinality(String),
  cgroup_id UInt64,
  bucket DateTime('UTC'),
  container_id SimpleAggregateFunction(max, LowCardinality(String)),
  container_name SimpleAggregateFunction(max, LowCardinality(String)),
  image SimpleAggregateFunction(max, LowCardinality(String)),
  pod SimpleAggregateFunction(max, LowCardinality(String)),
  namespace SimpleAggregateFunction(max, LowCardinality(String)),
  workload SimpleAggregateFunction(max, LowCardinality(String)),
  cpu_ns SimpleAggregateFunction(sum, UInt64), -- on-CPU ns
  cpu_switches SimpleAggregateFunction(sum, UInt64),
  cpu_interval_ns SimpleAggregateFunction(sum, UInt64), -- sampled ns (cores = cpu_ns / cpu_interval_ns)
  cpu_cores AggregateFunction(quantiles(0.5, 0.95), Float64), -- per-sample cores: quantilesMerge(0.5, 0.95)
  cpu_cores_max SimpleAggregateFunction(max, Float64),
  mem_bytes AggregateFunction(quantiles(0.5, 0.95), UInt64), -- memory.current: quantilesMerge(0.5, 0.95)
  mem_bytes_max SimpleAggregateFunction(max, UInt64),
  mem_peak_bytes SimpleAggregateFunction(max, UInt64),
  mem_limit_bytes SimpleAggregateFunction(max, UInt64), -- 0 = no limit
  oom_events SimpleAggregateFunction(sum, UInt64),
  net_rx_bytes SimpleAggregateFunction(sum, UInt64),
  net_rx_packets SimpleAggregateFunction(sum, UInt64),
  net_tx_bytes SimpleAggregateFunction(sum, UInt64),
  net_tx_packets SimpleAggregateFunction(sum, UInt64),
  blk_read_bytes SimpleAggregateFunction(sum, UInt64),
  blk_write_bytes SimpleAggregateFunction(sum, UInt64),
  blk_read_ios SimpleAggregateFunction(sum, UInt64),
  blk_write_ios SimpleAggregateFunction(sum, UInt64),
  blk_latency_hist AggregateFunction(sumForEach, Array(UInt64)) -- 32 log2-microsecond buckets: sumForEachMerge
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket) -- not by resolution: an insert's three resolutions share one part
ORDER BY (resolution, node, cgroup_id, bucket)
TTL bucket + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

DROP VIEW IF EXISTS {{database}}.usage_1d_from_usage_1h;
DROP VIEW IF EXISTS {{database}}.usage_1h_from_usage_1m;
DROP VIEW IF EXISTS {{database}}.usage_1m_from_cpu_sample;
DROP VIEW IF EXISTS {{database}}.usage_1m_from_memory_sample;
DROP VIEW IF EXISTS {{database}}.usage_1m_from_net_sample;
DROP VIEW IF EXISTS {{database}}.usage_1m_from_block_sample;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_from_cpu_sample TO {{database}}.usage AS
SELECT
  resolution,
  node,
  cgroup_id,
  multiIf(resolution = 60, minute, resolution = 3600, toStartOfHour(minute), toStartOfDay(minute)) AS bucket,
  max(container_id) AS container_id,
  max(container_name) AS container_name,
  max(image) AS image,
  max(pod) AS pod,
  max(namespace) AS namespace,
  max(workload) AS workload,
  sum(cpu_ns) AS cpu_ns,
  sum(cpu_switches) AS cpu_switches,
  sum(cpu_interval_ns) AS cpu_interval_ns,
  quantilesMergeState(0.5, 0.95)(cpu_cores) AS cpu_cores,
  max(cpu_cores_max) AS cpu_cores_max
FROM
(
  SELECT
    s.node AS node,
    s.cgroup_id AS cgroup_id,
    toStartOfMinute(s.time) AS minute,
    max(s.container_id) AS container_id,
    max(s.container_name) AS container_name,
    max(s.image) AS image,
    max(s.pod) AS pod,
    max(s.namespace) AS namespace,
    max(s.workload) AS workload,
    sum(s.cpu_ns) AS cpu_ns,
    sum(s.switches) AS cpu_switches,
    sum(s.interval_ns) AS cpu_interval_ns,
    quantilesState(0.5, 0.95)(s.cpu_ns / greatest(s.interval_ns, 1)) AS cpu_cores,
    max(s.cpu_ns / greatest(s.interval_ns, 1)) AS cpu_cores_max
  FROM {{database}}.cpu_sample AS s
  GROUP BY node, cgroup_id, minute
)
ARRAY JOIN [60, 3600, 86400] AS resolution
GROUP BY resolution, node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_from_memory_sample TO {{database}}.usage AS
SELECT
  resolution,
  node,
  cgroup_id,
  multiIf(resolution = 60, minute, resolution = 3600, toStartOfHour(minute), toStartOfDay(minute)) AS bucket,
  max(container_id) AS container_id,
  max(container_name) AS container_name,
  max(image) AS image,
  max(pod) AS pod,
  max(namespace) AS namespace,
  max(workload) AS workload,
  quantilesMergeState(0.5, 0.95)(mem_bytes) AS mem_bytes,
  max(mem_bytes_max) AS mem_bytes_max,
  max(mem_peak_bytes) AS mem_peak_bytes,
  max(mem_limit_bytes) AS mem_limit_bytes,
  sum(oom_events) AS oom_events
FROM
(
  SELECT
    s.node AS node,
    s.cgroup_id AS cgroup_id,
    toStartOfMinute(s.time) AS minute,
    max(s.container_id) AS container_id,
    max(s.container_name) AS container_name,
    max(s.image) AS image,
    max(s.pod) AS pod,
    max(s.namespace) AS namespace,
    max(s.workload) AS workload,
    quantilesState(0.5, 0.95)(s.current_bytes) AS mem_bytes,
    max(s.current_bytes) AS mem_bytes_max,
    max(s.peak_bytes) AS mem_peak_bytes,
    max(s.limit_bytes) AS mem_limit_bytes,
    sum(s.oom_events) AS oom_events
  FROM {{database}}.memory_sample AS s
  GROUP BY node, cgroup_id, minute
)
ARRAY JOIN [60, 3600, 86400] AS resolution
GROUP BY resolution, node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_from_net_sample TO {{database}}.usage AS
SELECT
  resolution,
  node,
  cgroup_id,
  multiIf(resolution = 60, minute, resolution = 3600, toStartOfHour(minute), toStartOfDay(minute)) AS bucket,
  max(container_id) AS container_id,
  max(container_name) AS container_name,
  max(image) AS image,
  max(pod) AS pod,
  max(namespace) AS namespace,
  max(workload) AS workload,
  sum(net_rx_bytes) AS net_rx_bytes,
  sum(net_rx_packets) AS net_rx_packets,
  sum(net_tx_bytes) AS net_tx_bytes,
  sum(net_tx_packets) AS net_tx_packets
FROM
(
  SELECT
    s.node AS node,
    s.cgroup_id AS cgroup_id,
    toStartOfMinute(s.time) AS minute,
    max(s.container_id) AS container_id,
    max(s.container_name) AS container_name,
    max(s.image) AS image,
    max(s.pod) AS pod,
    max(s.namespace) AS namespace,
    max(s.workload) AS workload,
    sum(s.rx_bytes) AS net_rx_bytes,
    sum(s.rx_packets) AS net_rx_packets,
    sum(s.tx_bytes) AS net_tx_bytes,
    sum(s.tx_packets) AS net_tx_packets
  FROM {{database}}.net_sample AS s
  GROUP BY node, cgroup_id, minute
)
ARRAY JOIN [60, 3600, 86400] AS resolution
GROUP BY resolution, node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_from_block_sample TO {{database}}.usage AS
SELECT
  resolution,
  node,
  cgroup_id,
  multiIf(resolution = 60, minute, resolution = 3600, toStartOfHour(minute), toStartOfDay(minute)) AS bucket,
  max(container_id) AS container_id,
  max(container_name) AS container_name,
  max(image) AS image,
  max(pod) AS pod,
  max(namespace) AS namespace,
  max(workload) AS workload,
  sum(blk_read_bytes) AS blk_read_bytes,
  sum(blk_write_bytes) AS blk_write_bytes,
  sum(blk_read_ios) AS blk_read_ios,
  sum(blk_write_ios) AS blk_write_ios,
  sumForEachMergeState(blk_latency_hist) AS blk_latency_hist
FROM
(
  SELECT
    s.node AS node,
    s.cgroup_id AS cgroup_id,
    toStartOfMinute(s.time) AS minute,
    max(s.container_id) AS container_id,
    max(s.container_name) AS container_name,
    max(s.image) AS image,
    max(s.pod) AS pod,
    max(s.namespace) AS namespace,
    max(s.workload) AS workload,
    sum(s.read_bytes) AS blk_read_bytes,
    sum(s.write_bytes) AS blk_write_bytes,
    sum(s.read_ios) AS blk_read_ios,
    sum(s.write_ios) AS blk_write_ios,
    sumForEachState(s.latency_hist) AS blk_latency_hist
  FROM {{database}}.block_sample AS s
  GROUP BY node, cgroup_id, minute
)
ARRAY JOIN [60, 3600, 86400] AS resolution
GROUP BY resolution, node, cgroup_id, bucket;

-- The rows of a store built by 0003, then the old tables become views of the same name.

INSERT INTO {{database}}.usage SETTINGS insert_deduplication_token = 'migration-0005:usage_1m'
SELECT 60 AS resolution, * FROM {{database}}.usage_1m
WHERE (SELECT engine FROM system.tables WHERE database = '{{database}}' AND name = 'usage_1m') = 'AggregatingMergeTree';

INSERT INTO {{database}}.usage SETTINGS insert_deduplication_token = 'migration-0005:usage_1h'
SELECT 3600 AS resolution, * FROM {{database}}.usage_1h
WHERE (SELECT engine FROM system.tables WHERE database = '{{database}}' AND name = 'usage_1h') = 'AggregatingMergeTree';

INSERT INTO {{database}}.usage SETTINGS insert_deduplication_token = 'migration-0005:usage_1d'
SELECT 86400 AS resolution, * FROM {{database}}.usage_1d
WHERE (SELECT engine FROM system.tables WHERE database = '{{database}}' AND name = 'usage_1d') = 'AggregatingMergeTree';

CREATE OR REPLACE VIEW {{database}}.usage_1m AS
SELECT * EXCEPT (resolution) FROM {{database}}.usage WHERE resolution = 60;

CREATE OR REPLACE VIEW {{database}}.usage_1h AS
SELECT * EXCEPT (resolution) FROM {{database}}.usage WHERE resolution = 3600;

CREATE OR REPLACE VIEW {{database}}.usage_1d AS
SELECT * EXCEPT (resolution) FROM {{database}}.usage WHERE resolution = 86400;
