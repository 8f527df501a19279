-- Memory peaks per workload: the highest memory.current any of its containers reached, the
-- kernel's own peak (memory.peak), p95 over its containers' samples, the largest limit and
-- how close the peak came to it, and OOM events of all its containers.
-- Parameters: from, to (DateTime).
SELECT
  workload,
  any(namespace) AS namespace,
  uniqExactIf(container_id, container_id != '') AS containers,
  max(mem_bytes_max) AS max_bytes,
  max(mem_peak_bytes) AS kernel_peak_bytes,
  quantilesMerge(0.5, 0.95)(mem_bytes)[2] AS p95_bytes,
  max(mem_limit_bytes) AS limit_bytes,
  if(limit_bytes > 0, round(100 * greatest(max_bytes, kernel_peak_bytes) / limit_bytes, 1), NULL) AS peak_pct_of_limit,
  sum(oom_events) AS oom_events
FROM {{database}}.usage_resolved
WHERE resolution = 3600 AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
GROUP BY workload
HAVING max_bytes > 0 OR kernel_peak_bytes > 0
ORDER BY greatest(max_bytes, kernel_peak_bytes) DESC
