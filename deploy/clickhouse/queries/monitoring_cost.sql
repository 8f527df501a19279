-- What monitoring costs each node, next to what its workloads use: the collector's CPU
-- (cores, averaged over the time it reported), its RSS (average and max), the kernel time
-- of its BPF programs (ns per second, and as cores; 0 where kernel.bpf_stats_enabled=0) and
-- the events per second it captured; then the containers' summed average cores and memory
-- from the hourly rollup (the host's own cgroups left out: they are not workloads), and monitoring as a percentage of the workloads' CPU.
-- Parameters: from, to (DateTime).
SELECT
  m.node AS node,
  round(m.covered_s, 1) AS reported_seconds,
  round(m.events / m.covered_s, 1) AS events_per_s,
  round(m.cpu_ns / 1e9 / m.covered_s, 4) AS collector_cores,
  round(m.rss_avg) AS collector_rss_avg_bytes,
  m.rss_max AS collector_rss_max_bytes,
  round(m.bpf_ns / m.covered_s) AS kernel_ns_per_s,
  round(m.bpf_ns / 1e9 / m.covered_s, 4) AS kernel_cores,
  round(ifNull(w.cores, 0), 4) AS workload_cores,
  ifNull(w.mem_bytes, 0) AS workload_memory_bytes,
  ifNull(w.containers, 0) AS workload_cgroups,
  if(ifNull(w.cores, 0) > 0, round(100 * (m.cpu_ns + m.bpf_ns) / 1e9 / m.covered_s / w.cores, 2), NULL)
    AS monitoring_pct_of_workload_cpu
FROM
(
  SELECT
    node,
    greatest(sum(interval_end_ns - interval_start_ns) / 1e9, 0.001) AS covered_s,
    sum(arraySum(mapValues(events_by_kind))) AS events,
    sum(cpu_ns) AS cpu_ns,
    avgIf(rss_bytes, rss_bytes > 0) AS rss_avg,
    max(rss_bytes) AS rss_max,
    sum(arraySum(mapValues(program_run_time_ns))) AS bpf_ns
  FROM {{database}}.collector_stats
  WHERE time >= {from:DateTime} AND time < {to:DateTime}
  GROUP BY node
) AS m
LEFT JOIN
(
  -- Per cgroup first (average cores over its sampled time, its p95 memory), then per node.
  SELECT node, count() AS containers, sum(cores) AS cores, sum(mem) AS mem_bytes
  FROM
  (
    SELECT
      node,
      cgroup_id,
      sum(cpu_ns) / greatest(sum(cpu_interval_ns), 1) AS cores,
      toUInt64(ifNotFinite(quantilesMerge(0.5, 0.95)(mem_bytes)[2], 0)) AS mem
    FROM {{database}}.usage_resolved
    WHERE resolution = 3600 AND workload != 'host'
      AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
    GROUP BY node, cgroup_id
  )
  GROUP BY node
) AS w ON m.node = w.node
ORDER BY node
SETTINGS join_use_nulls = 1;
