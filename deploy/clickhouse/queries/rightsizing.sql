-- Right-sizing per workload and container (a pod's containers each have their own requests;
-- the replicas of a Deployment or a scaled Compose service are one row):
-- the observed p95/max CPU per container and the peak memory of any of the workload's
-- containers against the Kubernetes requests and limits, with a suggestion (p95 CPU and peak
-- memory plus 20% headroom) and a verdict. Containers without requests (plain Docker) still
-- get the suggestion; the verdict says 'no request'. The host has no requests and no row.
-- Parameters: from, to (DateTime).
SELECT
  workload,
  container,
  containers,
  round(cpu_q[2] * 1000) AS p95_millicores,
  round(cpu_max * 1000) AS max_millicores,
  cpu_request_millis AS cpu_request_millicores,
  cpu_limit_millis AS cpu_limit_millicores,
  peak AS peak_memory_bytes,
  memory_request_bytes,
  memory_limit_bytes,
  toUInt64(ceil(cpu_q[2] * 1000 * 1.2)) AS suggested_cpu_request_millicores,
  toUInt64(ceil(peak * 1.2)) AS suggested_memory_request_bytes,
  multiIf(
    cpu_request_millis IS NULL, 'no request',
    cpu_q[2] * 1000 > cpu_request_millis, 'cpu under-requested',
    cpu_q[2] * 1000 * 2 < cpu_request_millis, 'cpu over-requested',
    'cpu ok') AS cpu_verdict,
  multiIf(
    memory_limit_bytes IS NOT NULL AND peak > 0.9 * memory_limit_bytes, 'memory near limit',
    memory_request_bytes IS NULL, 'no request',
    peak > memory_request_bytes, 'memory under-requested',
    peak * 2 < memory_request_bytes, 'memory over-requested',
    'memory ok') AS memory_verdict
FROM
(
  SELECT
    k.kw AS workload,
    k.kc AS container,
    uniqExact(k.cid) AS containers,
    -- A container with memory or network samples but no CPU sample in the range has no CPU
    -- quantiles (NaN): it used no CPU we saw, so 0.
    arrayMap(q -> ifNotFinite(q, 0), quantilesMerge(0.5, 0.95)(u.cpu_state)) AS cpu_q,
    max(u.cpu_max) AS cpu_max,
    max(greatest(u.mem_max, u.mem_peak)) AS peak,
    argMax(k.cpu_req, k.updated) AS cpu_request_millis,
    argMax(k.cpu_lim, k.updated) AS cpu_limit_millis,
    argMax(k.mem_req, k.updated) AS memory_request_bytes,
    argMax(k.mem_lim, k.updated) AS memory_limit_bytes
  FROM
  (
    SELECT node, cgroup_id, quantilesMergeState(0.5, 0.95)(cpu_cores) AS cpu_state, max(cpu_cores_max) AS cpu_max,
      max(mem_bytes_max) AS mem_max, max(mem_peak_bytes) AS mem_peak
    FROM {{database}}.usage
    WHERE resolution = 3600 AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
    GROUP BY node, cgroup_id
  ) AS u
  INNER JOIN
  (
    -- Names as the rows have them (0009: `workload`; the container is the pod spec's or the
    -- Compose service's, the same for every replica), the container name for records before.
    SELECT node, cgroup_id, argMax(container_id, updated_at_ns) AS cid,
      coalesce(nullIf(argMaxIf(workload, updated_at_ns, workload != ''), ''), argMax(name, updated_at_ns)) AS kw,
      coalesce(nullIf(argMaxIf(k8s_container_name, updated_at_ns, k8s_container_name != ''), ''),
        nullIf(argMaxIf(compose_service, updated_at_ns, compose_service != ''), ''), argMax(name, updated_at_ns)) AS kc,
      argMax(cpu_request_millis, updated_at_ns) AS cpu_req, argMax(cpu_limit_millis, updated_at_ns) AS cpu_lim,
      argMax(memory_request_bytes, updated_at_ns) AS mem_req, argMax(memory_limit_bytes, updated_at_ns) AS mem_lim,
      max(updated_at_ns) AS updated
    FROM {{database}}.containers
    WHERE container_id != ''
    GROUP BY node, cgroup_id
  ) AS k ON u.node = k.node AND u.cgroup_id = k.cgroup_id
  GROUP BY workload, container
)
ORDER BY workload, container
