-- Usage rollups per container (cgroup) per minute, hour and day: the capacity-analysis
-- tables that outlive the raw events (TTL ttl_rollup_days, 400 by default).
-- Four materialized views fill usage_1m from the sample tables (each fills its own metric
-- columns; AggregatingMergeTree merges the rows of one key); usage_1h and usage_1d cascade
-- from the level below, so each insert aggregates only the rows it brought.
-- Read with the -Merge combinators: sum(cpu_ns), max(mem_bytes_max),
-- quantilesMerge(0.5, 0.95)(cpu_cores), sumForEachMerge(blk_latency_hist), GROUP BY the key.
-- Deduplication: the targets have their own non_replicated_deduplication_window, and
-- deduplicate_blocks_in_dependent_materialized_views (default 1 in chDB 26.x) derives
-- their block tokens from the insert's token.

-- per minute
CREATE TABLE IF NOT EXISTS {{database}}.usage_1m
(
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
PARTITION BY toYYYYMM(bucket)
ORDER BY (node, cgroup_id, bucket)
TTL bucket + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- per hour
CREATE TABLE IF NOT EXISTS {{database}}.usage_1h
(
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
PARTITION BY toYYYYMM(bucket)
ORDER BY (node, cgroup_id, bucket)
TTL bucket + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- per day
CREATE TABLE IF NOT EXISTS {{database}}.usage_1d
(
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
PARTITION BY toYear(bucket)
ORDER BY (node, cgroup_id, bucket)
TTL bucket + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_from_cpu_sample TO {{database}}.usage_1m AS
SELECT
  s.node AS node,
  s.cgroup_id AS cgroup_id,
  toStartOfMinute(s.time) AS bucket,
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
GROUP BY node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_from_memory_sample TO {{database}}.usage_1m AS
SELECT
  s.node AS node,
  s.cgroup_id AS cgroup_id,
  toStartOfMinute(s.time) AS bucket,
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
GROUP BY node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_from_net_sample TO {{database}}.usage_1m AS
SELECT
  s.node AS node,
  s.cgroup_id AS cgroup_id,
  toStartOfMinute(s.time) AS bucket,
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
GROUP BY node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1m_from_block_sample TO {{database}}.usage_1m AS
SELECT
  s.node AS node,
  s.cgroup_id AS cgroup_id,
  toStartOfMinute(s.time) AS bucket,
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
GROUP BY node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1h_from_usage_1m TO {{database}}.usage_1h AS
SELECT
  node,
  cgroup_id,
  toStartOfHour(bucket) AS bucket,
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
  max(cpu_cores_max) AS cpu_cores_max,
  quantilesMergeState(0.5, 0.95)(mem_bytes) AS mem_bytes,
  max(mem_bytes_max) AS mem_bytes_max,
  max(mem_peak_bytes) AS mem_peak_bytes,
  max(mem_limit_bytes) AS mem_limit_bytes,
  sum(oom_events) AS oom_events,
  sum(net_rx_bytes) AS net_rx_bytes,
  sum(net_rx_packets) AS net_rx_packets,
  sum(net_tx_bytes) AS net_tx_bytes,
  sum(net_tx_packets) AS net_tx_packets,
  sum(blk_read_bytes) AS blk_read_bytes,
  sum(blk_write_bytes) AS blk_write_bytes,
  sum(blk_read_ios) AS blk_read_ios,
  sum(blk_write_ios) AS blk_write_ios,
  sumForEachMergeState(blk_latency_hist) AS blk_latency_hist
FROM {{database}}.usage_1m
GROUP BY node, cgroup_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.usage_1d_from_usage_1h TO {{database}}.usage_1d AS
SELECT
  node,
  cgroup_id,
  toStartOfDay(bucket) AS bucket,
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
  max(cpu_cores_max) AS cpu_cores_max,
  quantilesMergeState(0.5, 0.95)(mem_bytes) AS mem_bytes,
  max(mem_bytes_max) AS mem_bytes_max,
  max(mem_peak_bytes) AS mem_peak_bytes,
  max(mem_limit_bytes) AS mem_limit_bytes,
  sum(oom_events) AS oom_events,
  sum(net_rx_bytes) AS net_rx_bytes,
  sum(net_rx_packets) AS net_rx_packets,
  sum(net_tx_bytes) AS net_tx_bytes,
  sum(net_tx_packets) AS net_tx_packets,
  sum(blk_read_bytes) AS blk_read_bytes,
  sum(blk_write_bytes) AS blk_write_bytes,
  sum(blk_read_ios) AS blk_read_ios,
  sum(blk_write_ios) AS blk_write_ios,
  sumForEachMergeState(blk_latency_hist) AS blk_latency_hist
FROM {{database}}.usage_1h
GROUP BY node, cgroup_id, bucket;
