-- Workload identity on every row: beside the container id, what people name a container by
-- (docs/events.md, "Workload identity", has each column's OpenTelemetry attribute and source
-- per runtime; processor/src/workload.ts fills them). `workload` is now the row's one name for
-- its workload: <namespace>/<owner> for a pod, <project>/<service> under Compose, else the
-- container name, and `host` for rows outside any container (it held the Kubernetes owner
-- name alone before; that is workload_name now). Rows written before this migration keep ''
-- in the new columns.
--
-- LowCardinality with a '' default: a per-part dictionary and an index per row, runs of one
-- value in (node, cgroup_id, time) order, so a column costs next to nothing per event.

{{for t in proc_exec, proc_fork, proc_exit, cgroup_mkdir, cgroup_rmdir, cgroup_rename, oom_kill,
  tcp_connect, tcp_accept, tcp_close, tcp_reset, cpu_sample, net_sample, block_sample, memory_sample}}
ALTER TABLE {{database}}.{{t}}
  ADD COLUMN IF NOT EXISTS container_runtime LowCardinality(String) DEFAULT '' AFTER image,
  ADD COLUMN IF NOT EXISTS pod_uid LowCardinality(String) DEFAULT '' AFTER pod,
  ADD COLUMN IF NOT EXISTS k8s_container_name LowCardinality(String) DEFAULT '' AFTER namespace,
  ADD COLUMN IF NOT EXISTS workload_kind LowCardinality(String) DEFAULT '' AFTER k8s_container_name,
  ADD COLUMN IF NOT EXISTS workload_name LowCardinality(String) DEFAULT '' AFTER workload_kind,
  ADD COLUMN IF NOT EXISTS compose_project LowCardinality(String) DEFAULT '' AFTER workload_name,
  ADD COLUMN IF NOT EXISTS compose_service LowCardinality(String) DEFAULT '' AFTER compose_project,
  ADD COLUMN IF NOT EXISTS containerd_namespace LowCardinality(String) DEFAULT '' AFTER compose_service;
{{end}}

-- The containers dimension: ContainerRecord.runtimeNamespace, and the identity columns its
-- events carry that are not a record field (derived by the processor, workload.ts).
ALTER TABLE {{database}}.containers
  ADD COLUMN IF NOT EXISTS runtime_namespace LowCardinality(String) DEFAULT '' AFTER runtime,
  ADD COLUMN IF NOT EXISTS k8s_container_name LowCardinality(String) DEFAULT '' AFTER namespace,
  ADD COLUMN IF NOT EXISTS compose_project LowCardinality(String) DEFAULT '' AFTER workload_name,
  ADD COLUMN IF NOT EXISTS compose_service LowCardinality(String) DEFAULT '' AFTER compose_project,
  ADD COLUMN IF NOT EXISTS containerd_namespace LowCardinality(String) DEFAULT '' AFTER compose_service,
  ADD COLUMN IF NOT EXISTS workload LowCardinality(String) DEFAULT '' AFTER containerd_namespace;

-- The newest non-empty value of every identity column per (node, cgroup), named as on the
-- event rows (0004 explains the view; it listed six columns).
CREATE OR REPLACE VIEW {{database}}.containers_latest AS
SELECT
  node,
  cgroup_id,
  argMaxIf(container_id, updated_at_ns, container_id != '') AS container_id,
  argMaxIf(name, updated_at_ns, name != '') AS container_name,
  argMaxIf(image, updated_at_ns, image != '') AS image,
  argMaxIf(runtime, updated_at_ns, runtime NOT IN ('', 'unknown')) AS container_runtime,
  argMaxIf(pod_name, updated_at_ns, pod_name != '') AS pod,
  argMaxIf(pod_uid, updated_at_ns, pod_uid != '') AS pod_uid,
  argMaxIf(namespace, updated_at_ns, namespace != '') AS namespace,
  argMaxIf(k8s_container_name, updated_at_ns, k8s_container_name != '') AS k8s_container_name,
  argMaxIf(workload_kind, updated_at_ns, workload_kind != '') AS workload_kind,
  argMaxIf(workload_name, updated_at_ns, workload_name != '') AS workload_name,
  argMaxIf(compose_project, updated_at_ns, compose_project != '') AS compose_project,
  argMaxIf(compose_service, updated_at_ns, compose_service != '') AS compose_service,
  argMaxIf(containerd_namespace, updated_at_ns, containerd_namespace != '') AS containerd_namespace,
  argMaxIf(workload, updated_at_ns, workload != '') AS workload
FROM {{database}}.containers
GROUP BY node, cgroup_id;

-- The resolved views re-join every identity column (the rows 0004 re-joins), and every row
-- gets a workload: its own; else its container's (late metadata; a container name for records
-- written before this migration); else `host` when no container is known on the cgroup (the
-- collector publishes a record for every container's cgroup, even one nobody describes, so a
-- cgroup without one is the host's: a systemd service, a user session); else the container id.
-- usage_resolved below applies the same rule to the rollup: keep the two alike.
{{for kind in proc_exec, proc_fork, proc_exit, cgroup_mkdir, cgroup_rmdir, cgroup_rename,
  oom_kill, tcp_connect, tcp_accept, tcp_close, tcp_reset, cpu_sample, net_sample, block_sample,
  memory_sample}}
CREATE OR REPLACE VIEW {{database}}.{{kind}}_resolved AS
SELECT
  e.* REPLACE (
    if(resolved_late, c.container_id, e.container_id) AS container_id,
    if(resolved_late, c.container_name, e.container_name) AS container_name,
    if(resolved_late, c.image, e.image) AS image,
    if(resolved_late, c.container_runtime, e.container_runtime) AS container_runtime,
    if(resolved_late, c.pod, e.pod) AS pod,
    if(resolved_late, c.pod_uid, e.pod_uid) AS pod_uid,
    if(resolved_late, c.namespace, e.namespace) AS namespace,
    if(resolved_late, c.k8s_container_name, e.k8s_container_name) AS k8s_container_name,
    if(resolved_late, c.workload_kind, e.workload_kind) AS workload_kind,
    if(resolved_late, c.workload_name, e.workload_name) AS workload_name,
    if(resolved_late, c.compose_project, e.compose_project) AS compose_project,
    if(resolved_late, c.compose_service, e.compose_service) AS compose_service,
    if(resolved_late, c.containerd_namespace, e.containerd_namespace) AS containerd_namespace,
    multiIf(
      e.workload != '', e.workload,
      c.workload != '', c.workload,
      c.container_name != '', c.container_name,
      e.container_name != '', e.container_name,
      e.container_id = '' AND c.container_id = '', 'host',
      concat('container ', substring(if(e.container_id != '', e.container_id, c.container_id), 1, 12))
    ) AS workload,
    if(resolved_late, 'joined', toString(e.join_state)) AS join_state
  ),
  (e.join_state = 'pending' OR (e.join_state = 'joined' AND e.container_name = '')) AND c.container_name != '' AS resolved_late
FROM {{database}}.{{kind}} AS e
LEFT JOIN {{database}}.containers_latest AS c ON e.node = c.node AND e.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;
{{end}}

-- The rollup (0005), its rows named as the resolved views name event rows: the capacity
-- queries and the report (deploy/clickhouse/queries/) group by this `workload`.
CREATE OR REPLACE VIEW {{database}}.usage_resolved AS
SELECT
  u.* REPLACE (
    if(u.container_name = '' AND c.container_name != '', c.container_id, u.container_id) AS container_id,
    if(u.container_name = '' AND c.container_name != '', c.container_name, u.container_name) AS container_name,
    if(u.container_name = '' AND c.container_name != '', c.image, u.image) AS image,
    if(u.container_name = '' AND c.container_name != '', c.pod, u.pod) AS pod,
    if(u.container_name = '' AND c.container_name != '', c.namespace, u.namespace) AS namespace,
    multiIf(
      u.workload != '', u.workload,
      c.workload != '', c.workload,
      c.container_name != '', c.container_name,
      u.container_name != '', u.container_name,
      u.container_id = '' AND c.container_id = '', 'host',
      concat('container ', substring(if(u.container_id != '', u.container_id, c.container_id), 1, 12))
    ) AS workload
  )
FROM {{database}}.usage AS u
LEFT JOIN {{database}}.containers_latest AS c ON u.node = c.node AND u.cgroup_id = c.cgroup_id
SETTINGS join_use_nulls = 0;
