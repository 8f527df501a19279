-- Time in which no collector captured on a node. Sequence numbers show batches that were
-- numbered and then lost (completeness_hourly), but while no collector runs nothing is
-- numbered, so a collector restart (or crash) leaves no sequence gap at all. The stats records
-- do show it: within one collector run each record's interval starts where the previous one
-- ended, and a run's first record starts when its capture started, so the space between one
-- run's last record and the next run's first is uncaptured time.
--
-- After a clean stop the gap starts at the final record (written after the shutdown drain).
-- After a crash it starts at the dead run's last periodic record, up to statsIntervalMs
-- before the crash: what it captured in that stretch and delivered is in the event tables;
-- what it numbered and lost shows as missing batches in completeness_hourly. Across a reboot
-- the new run has a new boot id (prev_boot_id tells). Duplicate stats rows (a record kept on
-- disk at stop and sent again) overlap exactly and make no gap.
CREATE VIEW IF NOT EXISTS {{database}}.capture_gaps AS
SELECT
  node,
  prev_boot_id,
  boot_id,
  fromUnixTimestamp64Nano(toInt64(prev_end_ns), 'UTC') AS gap_start,
  fromUnixTimestamp64Nano(toInt64(interval_start_ns), 'UTC') AS gap_end,
  intDiv(toInt64(interval_start_ns) - toInt64(prev_end_ns), 1000000) AS gap_ms
FROM
(
  SELECT
    node,
    boot_id,
    interval_start_ns,
    lagInFrame(interval_end_ns, 1, interval_start_ns) OVER w AS prev_end_ns,
    lagInFrame(boot_id, 1, boot_id) OVER w AS prev_boot_id
  FROM {{database}}.collector_stats
  WINDOW w AS (PARTITION BY node ORDER BY interval_start_ns ASC, interval_end_ns ASC ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE interval_start_ns > prev_end_ns;
