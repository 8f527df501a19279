-- CPU per Kubernetes namespace (capacity planning across a fleet): how many workloads and
-- containers, summed CPU-seconds, and the p95 and max cores of its busiest container.
-- Containers outside Kubernetes (and the host) are under namespace ''.
-- Parameters: from, to (DateTime).
SELECT
  namespace,
  uniqExact(workload) AS workloads,
  uniqExactIf(container_id, container_id != '') AS containers,
  round(sum(cpu_ns) / 1e9, 3) AS cpu_seconds,
  round(max(p95_cores), 4) AS p95_cores_max_container,
  round(max(max_cores), 4) AS max_cores
FROM
(
  SELECT node, cgroup_id, any(namespace) AS namespace, any(workload) AS workload, any(container_id) AS container_id,
    sum(cpu_ns) AS cpu_ns, ifNotFinite(quantilesMerge(0.5, 0.95)(cpu_cores)[2], 0) AS p95_cores,
    max(cpu_cores_max) AS max_cores
  FROM {{database}}.usage_resolved
  WHERE resolution = 3600 AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
  HAVING sum(cpu_interval_ns) > 0
)
GROUP BY namespace
ORDER BY cpu_seconds DESC
