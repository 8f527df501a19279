-- The containers of each workload, one row per container (cgroup) on a node: the detail under
-- the per-workload queries. When it was seen (rollup minutes and process exits), its CPU and
-- memory peak, and its failed exits and OOM kills: a crash loop shows as one row per
-- re-created container. The host's cgroups show as `cgroup <id>` under workload `host`.
-- Parameters: from, to (DateTime), detail_limit (UInt32: most rows).
SELECT
  w AS workload,
  multiIf(cname != '', cname, cid != '', substring(cid, 1, 12), concat('cgroup ', toString(cgroup_id))) AS container,
  cid AS container_id,
  node,
  first_seen,
  last_seen,
  cpu_seconds,
  max_memory_bytes,
  failed_exits,
  oom_kills
FROM
(
  SELECT
    node,
    cgroup_id,
    max(workload) AS w,
    max(container_name) AS cname,
    max(container_id) AS cid,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    round(sum(cpu_ns) / 1e9, 3) AS cpu_seconds,
    max(memory_bytes) AS max_memory_bytes,
    sum(failed) AS failed_exits,
    sum(ooms) AS oom_kills
  FROM
  (
    SELECT node, cgroup_id, workload, container_name, container_id, bucket AS first_seen,
      bucket + INTERVAL 1 MINUTE AS last_seen, cpu_ns, greatest(mem_bytes_max, mem_peak_bytes) AS memory_bytes,
      0 AS failed, 0 AS ooms
    FROM {{database}}.usage_resolved
    WHERE resolution = 60 AND bucket >= toStartOfMinute({from:DateTime}) AND bucket < {to:DateTime}
    UNION ALL
    SELECT node, cgroup_id, workload, container_name, container_id, toDateTime(time), toDateTime(time), 0, 0,
      toUInt8(exit_code != 0 OR signal != 0), 0
    FROM {{database}}.proc_exit_resolved
    WHERE time >= {from:DateTime} AND time < {to:DateTime}
    UNION ALL
    SELECT node, cgroup_id, workload, container_name, container_id, toDateTime(time), toDateTime(time), 0, 0, 0, 1
    FROM {{database}}.oom_kill_resolved
    WHERE time >= {from:DateTime} AND time < {to:DateTime}
  )
  GROUP BY node, cgroup_id
)
ORDER BY workload, first_seen, container_id
LIMIT {detail_limit:UInt32}
