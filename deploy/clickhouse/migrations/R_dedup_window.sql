-- Repeatable migration: re-applied whenever the configured deduplication window
-- (clickhouse.dedupWindow) changes, so every table written with tokens has it, new or old.
-- The window is the number of recent inserts whose tokens a table remembers. Exactly-once
-- does not depend on it alone: a batch re-processed after a long delay checks which of its
-- messages' rows are already there (docs/processor.md), so a small window costs nothing
-- but memory of recent tokens, and a retry within it is dropped without that check.

{{for t in proc_exec, proc_fork, proc_exit, cgroup_mkdir, cgroup_rmdir, cgroup_rename, oom_kill, tcp_connect, tcp_accept, tcp_close, tcp_reset, cpu_sample, net_sample, block_sample, memory_sample, containers, event_batches, collector_stats, dead_letters, usage, ingest_losses, alert_state}}
ALTER TABLE {{database}}.{{t}} MODIFY SETTING non_replicated_deduplication_window = {{dedup_window}};
{{end}}
