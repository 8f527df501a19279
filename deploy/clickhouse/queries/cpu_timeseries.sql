-- CPU cores per minute for the busiest containers (the report's time chart).
-- Parameters: from, to (DateTime), limit (UInt32: how many containers).
WITH top AS
(
  SELECT node, cgroup_id
  FROM {{database}}.usage_1m
  WHERE bucket >= toStartOfMinute({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
  ORDER BY sum(cpu_ns) DESC
  LIMIT {limit:UInt32}
)
SELECT
  coalesce(nullIf(max(u.container_name), ''), any(c.container_name), toString(u.cgroup_id)) AS container,
  u.bucket AS minute,
  round(sum(u.cpu_ns) / greatest(sum(u.cpu_interval_ns), 1), 4) AS cores
FROM {{database}}.usage_1m AS u
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
WHERE u.bucket >= toStartOfMinute({from:DateTime}) AND u.bucket < {to:DateTime}
  AND (u.node, u.cgroup_id) IN (SELECT node, cgroup_id FROM top)
GROUP BY u.node, u.cgroup_id, u.bucket
ORDER BY container, minute
SETTINGS join_use_nulls = 1;
