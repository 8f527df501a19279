-- What monitoring costs a node (schemas/CollectorStats.avsc v2): the collector's own CPU in
-- each stats interval, its RSS at the interval's end, and the kernel time and runs of each
-- BPF program in the interval (bpf stats; empty maps where kernel.bpf_stats_enabled=0).
-- Rows from v1 collectors read 0 / empty. The monitoring_cost query puts these next to the
-- workloads' CPU and memory.
ALTER TABLE {{database}}.collector_stats ADD COLUMN IF NOT EXISTS cpu_ns UInt64 DEFAULT 0;
ALTER TABLE {{database}}.collector_stats ADD COLUMN IF NOT EXISTS rss_bytes UInt64 DEFAULT 0;
ALTER TABLE {{database}}.collector_stats ADD COLUMN IF NOT EXISTS program_run_time_ns Map(LowCardinality(String), UInt64);
ALTER TABLE {{database}}.collector_stats ADD COLUMN IF NOT EXISTS program_run_count Map(LowCardinality(String), UInt64);
