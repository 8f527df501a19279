-- OOM kills and crash loops per workload: OOM kills (kernel oom:mark_victim), non-zero exits
-- and deaths by signal of processes, of every container the workload had, and the densest
-- burst of failures in any `window_s`-second window (a crash loop shows as many failures in
-- one window; a container re-created on every crash is a new container id each time, and
-- `containers` counts them). workload_containers has the failures container by container.
-- Parameters: from, to (DateTime), window_s (UInt32).
SELECT
  workload,
  arrayStringConcat(arraySort(groupUniqArray(image)), ' ') AS images,
  uniqExactIf(container_id, container_id != '') AS containers,
  sum(is_oom) AS oom_kills,
  sum(is_failure) AS failed_exits,
  max(burst) AS max_failures_in_window,
  min(time) AS first_seen,
  max(time) AS last_seen
FROM
(
  SELECT workload, container_id, image, time, 1 AS is_oom, 0 AS is_failure, 0 AS burst
  FROM {{database}}.oom_kill_resolved
  WHERE time >= {from:DateTime} AND time < {to:DateTime}
  UNION ALL
  SELECT
    workload,
    container_id,
    image,
    time,
    0 AS is_oom,
    1 AS is_failure,
    count() OVER (PARTITION BY workload ORDER BY toUnixTimestamp(time) RANGE BETWEEN {window_s:UInt32} PRECEDING AND CURRENT ROW) AS burst
  FROM {{database}}.proc_exit_resolved
  WHERE time >= {from:DateTime} AND time < {to:DateTime} AND (exit_code != 0 OR signal != 0)
)
GROUP BY workload
ORDER BY oom_kills + failed_exits DESC
