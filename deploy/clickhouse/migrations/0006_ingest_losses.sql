-- What the processor knowingly did not deliver in full, one row per (batch, node, what,
-- reason), written under the batch's deduplication token like every other table: SQL can
-- answer "what did we lose, where, and why" next to completeness_hourly.
--   what = a raw table (reason older_than_ttl: rows that arrived already past the table's
--          TTL; the rollups have them, the raw table drops them on insert), or an output
--          topic (reason output_skipped: the enriched or alerts messages of this batch were
--          not published because the topic could not be written).
CREATE TABLE IF NOT EXISTS {{database}}.ingest_losses
(
  node LowCardinality(String),
  what LowCardinality(String),
  reason LowCardinality(String),
  rows UInt64,
  source_partition UInt32,
  first_offset UInt64,
  last_offset UInt64,
  detail String DEFAULT '',
  recorded_at_ns UInt64,
  time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(recorded_at_ns), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (what, reason, node, source_partition, first_offset)
TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

-- Dead letters keep at most a bounded `raw` (a body larger than the broker's message limit
-- could never be produced): the size of the whole source and, when cut, its SHA-256.
ALTER TABLE {{database}}.dead_letters ADD COLUMN IF NOT EXISTS raw_size UInt64 DEFAULT 0;
ALTER TABLE {{database}}.dead_letters ADD COLUMN IF NOT EXISTS raw_sha256 String DEFAULT '';
