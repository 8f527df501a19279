-- Late metadata: rows written while their container was unknown carry join_state 'pending'
-- and only the raw cgroup id. Rows can also be joined to a container record the runtime had
-- not named yet (cgroup_mkdir gives the container id first; the Docker name arrives a few ms
-- later, and a container that lives 100 ms may be gone before the first named record): they
-- carry join_state 'joined' with an empty container_name. containers_latest holds the newest
-- NON-EMPTY value of each attribute per (node, cgroup), and each <event>_resolved view
-- re-joins both kinds of rows with it, so SQL sees the resolved container as soon as its
-- metadata arrives, without rewriting the raw rows.
-- (A cgroup id is an inode number: reuse on one node within the retention is possible but
-- rare; the newest record wins.)
CREATE VIEW IF NOT EXISTS {{database}}.containers_latest AS
SELECT
  node,
  cgroup_id,
  argMaxIf(container_id, updated_at_ns, container_id != '') AS container_id,
  argMaxIf(name, updated_at_ns, name != '') AS container_name,
  argMaxIf(image, updated_at_ns, image != '') AS image,
  argMaxIf(pod_name, updated_at_ns, pod_name != '') AS pod,
  argMaxIf(namespace, updated_at_ns, namespace != '') AS namespace,
  argMaxIf(workload_name, updated_at_ns, workload_name != '') AS workload
FROM {{database}}.containers
GROUP BY node, cgroup_id;

-- One view per event table: render() in migrate.ts repeats the block once per name.
{{for kind in proc_exec, proc_fork, proc_exit, cgroup_mkdir, cgroup_rmdir, cgroup_rename,
  oom_kill, tcp_connect, tcp_accept, tcp_close, tcp_reset, cpu_sample, net_sample, block_sample,
  memory_sample}}
CREATE VIEW IF NOT EXISTS {{database}}.{{kind}}_resolved AS
SELECT
  e.* REPLACE (
    if(resolved_late, c.container_id, e.container_id) AS container_id,
    if(resolved_late, c.container_name, e.container_name) AS container_name,
    if(resolved_late, c.image, e.image) AS image,
    if(resolved_late, c.pod, e.pod) AS pod,
    if(resolved_late, c.namespace, e.namespace) AS namespace,
    if(resolved_late, c.workload, e.workload) AS workload,
    if(resolved_late, 'joined', toString(e.join_state)) AS join_state
  ),
  (e.join_state = 'pending' OR (e.join_state = 'joined' AND e.container_name = '')) AND c.container_name != '' AS resolved_late
FROM {{database}}.{{kind}} AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;
{{end}}
