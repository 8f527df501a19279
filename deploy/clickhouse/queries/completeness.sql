-- Data completeness per node and hour: batches received, missing (holes in the per-node
-- sequence numbers) and duplicated, and what the collector itself reported dropping
-- (kernel ring buffer, its Kafka buffer, malformed records). complete_pct is the share of
-- batches that arrived. Parameters: from, to (DateTime).
SELECT
  b.node AS node,
  b.hour AS hour,
  b.batches_received AS batches_received,
  b.batches_missing AS batches_missing,
  b.batches_duplicated AS batches_duplicated,
  b.events_received AS events_received,
  coalesce(d.kernel_drops, 0) AS kernel_drops,
  coalesce(d.buffer_drops, 0) AS buffer_drops,
  coalesce(d.malformed_records, 0) AS malformed_records,
  round(100 * b.batches_received / greatest(b.batches_received + b.batches_missing, 1), 3) AS complete_pct
FROM
(
  SELECT node, hour, sum(batches_received) AS batches_received, sum(batches_missing) AS batches_missing,
    sum(batches_duplicated) AS batches_duplicated, sum(events_received) AS events_received
  FROM {{database}}.completeness_hourly
  WHERE hour >= toStartOfHour({from:DateTime}) AND hour < {to:DateTime}
  GROUP BY node, hour
) AS b
LEFT JOIN
(
  SELECT node, hour, sum(kernel_drops) AS kernel_drops, sum(buffer_drops) AS buffer_drops, sum(malformed_records) AS malformed_records
  FROM {{database}}.collector_drops_hourly
  WHERE hour >= toStartOfHour({from:DateTime}) AND hour < {to:DateTime}
  GROUP BY node, hour
) AS d ON b.node = d.node AND b.hour = d.hour
ORDER BY node, hour
SETTINGS join_use_nulls = 1;
