-- CPU per workload over a time range, from the hourly rollup (kept ttl_rollup_days, 400 by
-- default). A workload is what usage_resolved names it (migration 0009): <namespace>/<owner>
-- for a pod, <project>/<service> under Compose, else the container name, and `host` for the
-- node's own processes. cpu_seconds and containers count every container of the workload (a
-- container re-created five times is five); the cores are per container: average, p50, p95
-- and max. workload_containers has the containers one by one.
-- Parameters: from, to (DateTime).
SELECT
  workload,
  namespace,
  containers,
  nodes,
  round(cpu_ns / 1e9, 3) AS cpu_seconds,
  round(cpu_ns / greatest(cpu_interval_ns, 1), 4) AS avg_cores,
  round(cpu_q[1], 4) AS p50_cores,
  round(cpu_q[2], 4) AS p95_cores,
  round(cpu_max, 4) AS max_cores
FROM
(
  SELECT
    workload,
    any(namespace) AS namespace,
    uniqExactIf(container_id, container_id != '') AS containers,
    uniqExact(node) AS nodes,
    sum(cpu_ns) AS cpu_ns,
    sum(cpu_interval_ns) AS cpu_interval_ns,
    quantilesMerge(0.5, 0.95)(cpu_cores) AS cpu_q,
    max(cpu_cores_max) AS cpu_max
  FROM {{database}}.usage_resolved
  WHERE resolution = 3600 AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY workload
  HAVING cpu_interval_ns > 0
)
ORDER BY cpu_seconds DESC
