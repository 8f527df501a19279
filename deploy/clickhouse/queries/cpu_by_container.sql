-- CPU use per namespace, workload and container over a time range, from the hourly rollup
-- (kept ttl_rollup_days, 400 by default): average, p50, p95 and max cores, and CPU-seconds.
-- Names come from the rollup, or from containers_latest for rows written before their
-- metadata arrived (join_state 'pending').
-- Parameters: from, to (DateTime).
SELECT
  coalesce(nullIf(u.namespace, ''), c.namespace) AS namespace,
  coalesce(nullIf(u.workload, ''), c.workload) AS workload,
  coalesce(nullIf(u.container_name, ''), c.container_name, toString(u.cgroup_id)) AS container,
  u.node AS node,
  round(u.cpu_ns / 1e9, 3) AS cpu_seconds,
  round(u.cpu_ns / greatest(u.cpu_interval_ns, 1), 4) AS avg_cores,
  round(u.cpu_q[1], 4) AS p50_cores,
  round(u.cpu_q[2], 4) AS p95_cores,
  round(u.cpu_max, 4) AS max_cores
FROM
(
  SELECT
    node,
    cgroup_id,
    max(namespace) AS namespace,
    max(workload) AS workload,
    max(container_name) AS container_name,
    sum(cpu_ns) AS cpu_ns,
    sum(cpu_interval_ns) AS cpu_interval_ns,
    quantilesMerge(0.5, 0.95)(cpu_cores) AS cpu_q,
    max(cpu_cores_max) AS cpu_max
  FROM {{database}}.usage_1h
  WHERE bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
) AS u
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
ORDER BY cpu_seconds DESC
SETTINGS join_use_nulls = 1;
