-- Rows can be joined to a container record that the runtime had not named yet (the kernel
-- cgroup_mkdir names the container id first; the Docker name arrives a few ms later, and a
-- container that lives 100 ms may be gone before the first named record). Such rows carry
-- join_state 'joined' with an empty container_name. The views now also re-join them, and
-- containers_latest takes the newest NON-EMPTY value of each attribute.
CREATE OR REPLACE VIEW {{database}}.containers_latest AS
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

CREATE OR REPLACE VIEW {{database}}.proc_exec_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.proc_fork_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.proc_exit_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.cgroup_mkdir_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.cgroup_rmdir_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.cgroup_rename_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.oom_kill_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.tcp_connect_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.tcp_accept_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.tcp_close_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.tcp_reset_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.cpu_sample_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.net_sample_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.block_sample_resolved AS
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

CREATE OR REPLACE VIEW {{database}}.memory_sample_resolved AS
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
