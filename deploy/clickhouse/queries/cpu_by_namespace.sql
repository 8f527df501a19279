-- CPU per namespace and workload (capacity planning across a fleet): summed CPU-seconds and
-- the p95/max of per-container cores. Parameters: from, to (DateTime).
SELECT
  coalesce(nullIf(u.namespace, ''), c.namespace, '') AS namespace,
  coalesce(nullIf(u.workload, ''), c.workload, '') AS workload,
  count() AS containers,
  round(sum(u.cpu_ns) / 1e9, 3) AS cpu_seconds,
  round(max(u.cpu_q[2]), 4) AS p95_cores_max_container,
  round(max(u.cpu_max), 4) AS max_cores
FROM
(
  SELECT node, cgroup_id, max(namespace) AS namespace, max(workload) AS workload, sum(cpu_ns) AS cpu_ns,
    quantilesMerge(0.5, 0.95)(cpu_cores) AS cpu_q, max(cpu_cores_max) AS cpu_max
  FROM {{database}}.usage_1h
  WHERE bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
) AS u
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
GROUP BY namespace, workload
ORDER BY cpu_seconds DESC
SETTINGS join_use_nulls = 1;
