-- CPU cores per minute of the busiest workloads and of the host (the report's time charts):
-- every container of a workload together, cores = CPU-seconds in the minute / 60.
-- Parameters: from, to (DateTime), limit (UInt32: how many workloads besides the host).
WITH top AS
(
  SELECT workload
  FROM {{database}}.usage_resolved
  WHERE resolution = 60 AND bucket >= toStartOfMinute({from:DateTime}) AND bucket < {to:DateTime}
    AND workload != 'host'
  GROUP BY workload
  HAVING sum(cpu_ns) > 0
  ORDER BY sum(cpu_ns) DESC
  LIMIT {limit:UInt32}
)
SELECT
  workload,
  bucket AS minute,
  round(sum(cpu_ns) / 60e9, 4) AS cores
FROM {{database}}.usage_resolved
WHERE resolution = 60 AND bucket >= toStartOfMinute({from:DateTime}) AND bucket < {to:DateTime}
  AND (workload IN (SELECT workload FROM top) OR workload = 'host')
GROUP BY workload, minute
HAVING sum(cpu_interval_ns) > 0
ORDER BY workload, minute
