-- Right-sizing: each container's observed p95/max CPU and peak memory against its
-- Kubernetes requests and limits, with a suggestion (p95 CPU and peak memory plus 20%
-- headroom) and a verdict. Containers without requests (plain Docker) still get the
-- suggestion; the verdict says 'no request'.
-- Parameters: from, to (DateTime).
SELECT
  k.namespace AS namespace,
  k.workload AS workload,
  k.name AS container,
  round(u.cpu_q[2] * 1000) AS p95_millicores,
  round(u.cpu_max * 1000) AS max_millicores,
  k.cpu_request_millis AS cpu_request_millicores,
  k.cpu_limit_millis AS cpu_limit_millicores,
  greatest(u.mem_max, u.mem_peak) AS peak_memory_bytes,
  k.memory_request_bytes AS memory_request_bytes,
  k.memory_limit_bytes AS memory_limit_bytes,
  toUInt64(ceil(u.cpu_q[2] * 1000 * 1.2)) AS suggested_cpu_request_millicores,
  toUInt64(ceil(greatest(u.mem_max, u.mem_peak) * 1.2)) AS suggested_memory_request_bytes,
  multiIf(
    k.cpu_request_millis IS NULL, 'no request',
    u.cpu_q[2] * 1000 > k.cpu_request_millis, 'cpu under-requested',
    u.cpu_q[2] * 1000 * 2 < k.cpu_request_millis, 'cpu over-requested',
    'cpu ok') AS cpu_verdict,
  multiIf(
    k.memory_limit_bytes IS NOT NULL AND greatest(u.mem_max, u.mem_peak) > 0.9 * k.memory_limit_bytes, 'memory near limit',
    k.memory_request_bytes IS NULL, 'no request',
    greatest(u.mem_max, u.mem_peak) > k.memory_request_bytes, 'memory under-requested',
    greatest(u.mem_max, u.mem_peak) * 2 < k.memory_request_bytes, 'memory over-requested',
    'memory ok') AS memory_verdict
FROM
(
  -- A container with memory or network samples but no CPU sample in the range has no CPU
  -- quantiles (NaN): it used no CPU we saw, so 0.
  SELECT node, cgroup_id, arrayMap(q -> ifNotFinite(q, 0), quantilesMerge(0.5, 0.95)(cpu_cores)) AS cpu_q,
    max(cpu_cores_max) AS cpu_max,
    max(mem_bytes_max) AS mem_max, max(mem_peak_bytes) AS mem_peak
  FROM {{database}}.usage_1h
  WHERE bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
) AS u
INNER JOIN
(
  SELECT node, cgroup_id, argMax(name, updated_at_ns) AS name, argMax(namespace, updated_at_ns) AS namespace,
    argMax(workload_name, updated_at_ns) AS workload,
    argMax(cpu_request_millis, updated_at_ns) AS cpu_request_millis, argMax(cpu_limit_millis, updated_at_ns) AS cpu_limit_millis,
    argMax(memory_request_bytes, updated_at_ns) AS memory_request_bytes, argMax(memory_limit_bytes, updated_at_ns) AS memory_limit_bytes
  FROM {{database}}.containers
  GROUP BY node, cgroup_id
) AS k ON u.node = k.node AND u.cgroup_id = k.cgroup_id
ORDER BY namespace, workload, container;
