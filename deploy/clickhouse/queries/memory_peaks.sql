-- Memory peaks per container: the highest memory.current seen, the kernel's own peak
-- (memory.peak), p95, the limit and how close the peak came to it, and OOM events.
-- Parameters: from, to (DateTime).
SELECT
  coalesce(nullIf(u.namespace, ''), c.namespace) AS namespace,
  coalesce(nullIf(u.container_name, ''), c.container_name, toString(u.cgroup_id)) AS container,
  u.node AS node,
  u.mem_max AS max_bytes,
  u.mem_peak AS kernel_peak_bytes,
  u.mem_q[2] AS p95_bytes,
  u.mem_limit AS limit_bytes,
  if(u.mem_limit > 0, round(100 * greatest(u.mem_max, u.mem_peak) / u.mem_limit, 1), NULL) AS peak_pct_of_limit,
  u.oom_events AS oom_events
FROM
(
  SELECT node, cgroup_id, max(namespace) AS namespace, max(container_name) AS container_name,
    max(mem_bytes_max) AS mem_max, max(mem_peak_bytes) AS mem_peak, quantilesMerge(0.5, 0.95)(mem_bytes) AS mem_q,
    max(mem_limit_bytes) AS mem_limit, sum(oom_events) AS oom_events
  FROM {{database}}.usage_1h
  WHERE bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
  HAVING mem_max > 0 OR mem_peak > 0
) AS u
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
ORDER BY max_bytes DESC
SETTINGS join_use_nulls = 1;
