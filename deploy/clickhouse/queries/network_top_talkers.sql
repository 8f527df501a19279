-- Network egress top talkers per workload: bytes out and in (cgroup_skb counters in the
-- rollup) and, from closed TCP connections, bytes sent and the busiest destination.
-- Parameters: from, to (DateTime), limit (UInt32).
SELECT
  u.workload AS workload,
  u.containers AS containers,
  u.tx_bytes AS egress_bytes,
  u.rx_bytes AS ingress_bytes,
  t.tcp_bytes_sent AS tcp_bytes_sent,
  t.connections AS tcp_connections,
  t.top_destination AS top_destination
FROM
(
  SELECT workload, uniqExactIf(container_id, container_id != '') AS containers,
    sum(net_tx_bytes) AS tx_bytes, sum(net_rx_bytes) AS rx_bytes
  FROM {{database}}.usage_resolved
  WHERE resolution = 3600 AND bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY workload
) AS u
LEFT JOIN
(
  SELECT workload, sum(bytes_sent) AS tcp_bytes_sent, count() AS connections,
    topKWeighted(1)(concat(daddr, ':', toString(dport)), bytes_sent)[1] AS top_destination
  FROM {{database}}.tcp_close_resolved
  WHERE time >= {from:DateTime} AND time < {to:DateTime}
  GROUP BY workload
) AS t ON u.workload = t.workload
WHERE u.tx_bytes > 0 OR t.tcp_bytes_sent > 0
ORDER BY greatest(u.tx_bytes, coalesce(t.tcp_bytes_sent, 0)) DESC
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1
