-- Raw event tables: one per event kind of docs/events.md, columns = the catalog's fields in
-- snake_case. Every row carries the node, boot id, wall-clock time (DateTime64(9), computed
-- by the pipeline from the boot-time clock), the raw boot-time ts_ns, the cgroup id, the
-- enrichment columns (join_state 'pending' = the container was not known yet: see the
-- *_resolved views) and the Kafka coordinates it came from.
--
-- Day partitions with ttl_only_drop_parts: expiry drops whole parts, no rewrites.
-- ORDER BY (node, cgroup_id, time): per-container time ranges are the common query.
-- non_replicated_deduplication_window: inserts carry insert_deduplication_token, and this
-- window is what makes a repeated token a no-op on a non-replicated MergeTree.
-- Codecs: DoubleDelta for timestamps (near-constant steps within a cgroup), Delta for the
-- sorted cgroup id, T64 for small counters; ZSTD after each.

-- process exec (ring buffer)
CREATE TABLE IF NOT EXISTS {{database}}.proc_exec
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  ppid UInt32 CODEC(T64, ZSTD(1)),
  uid UInt32 CODEC(T64, ZSTD(1)),
  gid UInt32 CODEC(T64, ZSTD(1)),
  args_count UInt32 CODEC(T64, ZSTD(1)),
  args_size UInt32 CODEC(T64, ZSTD(1)),
  comm LowCardinality(String),
  filename String CODEC(ZSTD(3)),
  args Array(String) CODEC(ZSTD(3)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- process fork
CREATE TABLE IF NOT EXISTS {{database}}.proc_fork
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  parent_pid UInt32 CODEC(T64, ZSTD(1)),
  parent_tgid UInt32 CODEC(T64, ZSTD(1)),
  child_pid UInt32 CODEC(T64, ZSTD(1)),
  child_tgid UInt32 CODEC(T64, ZSTD(1)),
  comm LowCardinality(String),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- process exit, once per thread group
CREATE TABLE IF NOT EXISTS {{database}}.proc_exit
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  ppid UInt32 CODEC(T64, ZSTD(1)),
  exit_code UInt32 CODEC(T64, ZSTD(1)),
  signal UInt32 CODEC(T64, ZSTD(1)),
  core_dumped UInt32 CODEC(T64, ZSTD(1)),
  start_ns UInt64 CODEC(T64, ZSTD(1)),
  cpu_ns UInt64 CODEC(T64, ZSTD(1)),
  comm LowCardinality(String),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- cgroup created (header cgroup_id = the new cgroup)
CREATE TABLE IF NOT EXISTS {{database}}.cgroup_mkdir
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  level UInt32 CODEC(T64, ZSTD(1)),
  hierarchy_id UInt32 CODEC(T64, ZSTD(1)),
  path String CODEC(ZSTD(3)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- cgroup removed
CREATE TABLE IF NOT EXISTS {{database}}.cgroup_rmdir
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  level UInt32 CODEC(T64, ZSTD(1)),
  hierarchy_id UInt32 CODEC(T64, ZSTD(1)),
  path String CODEC(ZSTD(3)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- cgroup renamed (path = new path)
CREATE TABLE IF NOT EXISTS {{database}}.cgroup_rename
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  level UInt32 CODEC(T64, ZSTD(1)),
  hierarchy_id UInt32 CODEC(T64, ZSTD(1)),
  path String CODEC(ZSTD(3)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- OOM kill (header cgroup_id = the victim's cgroup)
CREATE TABLE IF NOT EXISTS {{database}}.oom_kill
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  victim_pid UInt32 CODEC(T64, ZSTD(1)),
  victim_uid UInt32 CODEC(T64, ZSTD(1)),
  total_vm_kb UInt64 CODEC(T64, ZSTD(1)),
  anon_rss_kb UInt64 CODEC(T64, ZSTD(1)),
  file_rss_kb UInt64 CODEC(T64, ZSTD(1)),
  shmem_rss_kb UInt64 CODEC(T64, ZSTD(1)),
  comm LowCardinality(String),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- outgoing TCP connection (cgroup = the socket's owner)
CREATE TABLE IF NOT EXISTS {{database}}.tcp_connect
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  family UInt16,
  sport UInt16,
  dport UInt16,
  saddr String CODEC(ZSTD(1)),
  daddr String CODEC(ZSTD(1)),
  sock_cookie UInt64 CODEC(ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- accepted TCP connection
CREATE TABLE IF NOT EXISTS {{database}}.tcp_accept
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  family UInt16,
  sport UInt16,
  dport UInt16,
  saddr String CODEC(ZSTD(1)),
  daddr String CODEC(ZSTD(1)),
  sock_cookie UInt64 CODEC(ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- TCP connection closed, with its totals
CREATE TABLE IF NOT EXISTS {{database}}.tcp_close
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  family UInt16,
  sport UInt16,
  dport UInt16,
  saddr String CODEC(ZSTD(1)),
  daddr String CODEC(ZSTD(1)),
  sock_cookie UInt64 CODEC(ZSTD(1)),
  bytes_sent UInt64 CODEC(T64, ZSTD(1)),
  bytes_received UInt64 CODEC(T64, ZSTD(1)),
  duration_ns UInt64 CODEC(T64, ZSTD(1)),
  retransmits UInt32 CODEC(T64, ZSTD(1)),
  resets UInt32 CODEC(T64, ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- TCP reset sent (direction 0) or received (1)
CREATE TABLE IF NOT EXISTS {{database}}.tcp_reset
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  family UInt16,
  sport UInt16,
  dport UInt16,
  saddr String CODEC(ZSTD(1)),
  daddr String CODEC(ZSTD(1)),
  sock_cookie UInt64 CODEC(ZSTD(1)),
  direction UInt8,
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- on-CPU time per cgroup per sample interval (kernel map deltas)
CREATE TABLE IF NOT EXISTS {{database}}.cpu_sample
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  cpu_ns UInt64 CODEC(T64, ZSTD(1)),
  switches UInt64 CODEC(T64, ZSTD(1)),
  interval_ns UInt64 CODEC(T64, ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- network bytes/packets per cgroup per interval
CREATE TABLE IF NOT EXISTS {{database}}.net_sample
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  rx_bytes UInt64 CODEC(T64, ZSTD(1)),
  rx_packets UInt64 CODEC(T64, ZSTD(1)),
  tx_bytes UInt64 CODEC(T64, ZSTD(1)),
  tx_packets UInt64 CODEC(T64, ZSTD(1)),
  interval_ns UInt64 CODEC(T64, ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- block IO per cgroup per interval; latency_hist = 32 log2 microsecond buckets
CREATE TABLE IF NOT EXISTS {{database}}.block_sample
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  read_bytes UInt64 CODEC(T64, ZSTD(1)),
  write_bytes UInt64 CODEC(T64, ZSTD(1)),
  read_ios UInt64 CODEC(T64, ZSTD(1)),
  write_ios UInt64 CODEC(T64, ZSTD(1)),
  latency_hist Array(UInt64) CODEC(ZSTD(1)),
  interval_ns UInt64 CODEC(T64, ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;

-- cgroup memory (cgroupfs, not eBPF) per interval; limit_bytes 0 = none
CREATE TABLE IF NOT EXISTS {{database}}.memory_sample
(
  node LowCardinality(String),
  boot_id LowCardinality(String),
  time DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
  ts_ns UInt64 CODEC(DoubleDelta, ZSTD(1)),
  cgroup_id UInt64 CODEC(Delta, ZSTD(1)),
  pid UInt32 CODEC(T64, ZSTD(1)),
  tgid UInt32 CODEC(T64, ZSTD(1)),
  flags UInt16 DEFAULT 0,
  current_bytes UInt64 CODEC(T64, ZSTD(1)),
  peak_bytes UInt64 CODEC(T64, ZSTD(1)),
  limit_bytes UInt64 CODEC(T64, ZSTD(1)),
  oom_events UInt64 CODEC(T64, ZSTD(1)),
  container_id LowCardinality(String) DEFAULT '',
  container_name LowCardinality(String) DEFAULT '',
  image LowCardinality(String) DEFAULT '',
  pod LowCardinality(String) DEFAULT '',
  namespace LowCardinality(String) DEFAULT '',
  workload LowCardinality(String) DEFAULT '',
  join_state Enum8('joined' = 1, 'pending' = 2, 'host' = 3) DEFAULT 'pending',
  kafka_partition UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
  kafka_offset UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)),
  -- A row without a wall-clock time would land in 1970 and be dropped by the TTL at once.
  CONSTRAINT time_is_set CHECK time > toDateTime64('2001-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (node, cgroup_id, time)
TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, ttl_only_drop_parts = 1;
