-- Repeatable migration: re-applied whenever its rendered text changes, i.e. whenever the
-- configured TTLs change, so a new retention reaches tables that already exist (CREATE
-- TABLE IF NOT EXISTS alone never would). MODIFY TTL is a metadata change plus a background
-- mutation that drops what the new TTL expired.

ALTER TABLE {{database}}.proc_exec MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.proc_fork MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.proc_exit MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.cgroup_mkdir MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.cgroup_rmdir MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.cgroup_rename MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.oom_kill MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.tcp_connect MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.tcp_accept MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.tcp_close MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.tcp_reset MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.cpu_sample MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.net_sample MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.block_sample MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.memory_sample MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.dead_letters MODIFY TTL toDateTime(time) + INTERVAL {{ttl_raw_days}} DAY;
ALTER TABLE {{database}}.usage MODIFY TTL bucket + INTERVAL {{ttl_rollup_days}} DAY;
ALTER TABLE {{database}}.event_batches MODIFY TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY;
ALTER TABLE {{database}}.collector_stats MODIFY TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY;
ALTER TABLE {{database}}.containers MODIFY TTL toDateTime(updated_at) + INTERVAL {{ttl_rollup_days}} DAY;
ALTER TABLE {{database}}.ingest_losses MODIFY TTL toDateTime(time) + INTERVAL {{ttl_rollup_days}} DAY;
