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

CREATE VIEW IF NOT EXISTS {{database}}.proc_exec_resolved AS
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
FROM {{database}}.proc_exec AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.proc_fork_resolved AS
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
FROM {{database}}.proc_fork AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.proc_exit_resolved AS
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
FROM {{database}}.proc_exit AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.cgroup_mkdir_resolved AS
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
FROM {{database}}.cgroup_mkdir AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.cgroup_rmdir_resolved AS
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
FROM {{database}}.cgroup_rmdir AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.cgroup_rename_resolved AS
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
FROM {{database}}.cgroup_rename AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.oom_kill_resolved AS
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
FROM {{database}}.oom_kill AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.tcp_connect_resolved AS
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
FROM {{database}}.tcp_connect AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.tcp_accept_resolved AS
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
FROM {{database}}.tcp_accept AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.tcp_close_resolved AS
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
FROM {{database}}.tcp_close AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.tcp_reset_resolved AS
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
FROM {{database}}.tcp_reset AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.cpu_sample_resolved AS
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
FROM {{database}}.cpu_sample AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.net_sample_resolved AS
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
FROM {{database}}.net_sample AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.block_sample_resolved AS
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
FROM {{database}}.block_sample AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;

CREATE VIEW IF NOT EXISTS {{database}}.memory_sample_resolved AS
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
FROM {{database}}.memory_sample AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;
