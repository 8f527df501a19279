-- Network egress top talkers: per container, bytes out and in (cgroup_skb counters in the
-- rollup) and, from closed TCP connections, bytes sent and the busiest destination.
-- Parameters: from, to (DateTime), limit (UInt32).
SELECT
  coalesce(nullIf(u.container_name, ''), c.container_name, toString(u.cgroup_id)) AS container,
  u.node AS node,
  u.tx_bytes AS egress_bytes,
  u.rx_bytes AS ingress_bytes,
  t.tcp_bytes_sent AS tcp_bytes_sent,
  t.connections AS tcp_connections,
  t.top_destination AS top_destination
FROM
(
  SELECT node, cgroup_id, max(container_name) AS container_name, sum(net_tx_bytes) AS tx_bytes, sum(net_rx_bytes) AS rx_bytes
  FROM {{database}}.usage_1h
  WHERE bucket >= toStartOfHour({from:DateTime}) AND bucket < {to:DateTime}
  GROUP BY node, cgroup_id
) AS u
LEFT JOIN
(
  SELECT node, cgroup_id, sum(bytes_sent) AS tcp_bytes_sent, count() AS connections,
    topKWeighted(1)(concat(daddr, ':', toString(dport)), bytes_sent)[1] AS top_destination
  FROM {{database}}.tcp_close
  WHERE time >= {from:DateTime} AND time < {to:DateTime}
  GROUP BY node, cgroup_id
) AS t ON u.node = t.node AND u.cgroup_id = t.cgroup_id
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
WHERE u.tx_bytes > 0 OR t.tcp_bytes_sent > 0
ORDER BY greatest(u.tx_bytes, coalesce(t.tcp_bytes_sent, 0)) DESC
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1;
