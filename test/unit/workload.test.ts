// The workload rule (processor/src/workload.ts), table-driven per runtime: the identity columns
// every row carries, the row's one workload name, and the restart-chain identity the crash-loop
// rule keys by, which must agree on which runtime a record is.
import { describe, expect, it } from 'vitest';
import { applyHost, applyJoin } from '../../processor/src/join-identity.js';
import type { ContainerMeta } from '../../processor/src/metadata-table.js';
import { containerMetaFromRecord, containerRow } from '../../processor/src/rows.js';
import {
  HOST_IDENTITY,
  IDENTITY_COLUMNS,
  type IdentityColumns,
  identityColumns,
  workloadIdentity,
} from '../../processor/src/workload.js';
import { testEventRow } from '../support/event-row.js';

function meta(over: Partial<ContainerMeta>): ContainerMeta {
  return {
    node: 'n1',
    cgroupId: 7n,
    containerId: 'c0',
    runtime: 'docker',
    cgroupPath: '/docker/c0',
    name: '',
    image: 'img',
    labels: {},
    pod: '',
    podUid: '',
    namespace: '',
    workloadKind: '',
    workload: '',
    runtimeNamespace: '',
    startedAtNs: 0n,
    stoppedAtNs: 0n,
    updatedAtNs: 0n,
    state: 'RUNNING',
    ...over,
  };
}

const CASES: {
  what: string;
  meta: Partial<ContainerMeta>;
  columns: Partial<IdentityColumns>;
  identity: string;
}[] = [
  {
    what: 'Kubernetes pod container (CRI containerd, with the pod watch)',
    meta: {
      runtime: 'containerd',
      runtimeNamespace: 'k8s.io',
      cgroupPath: '/kubepods.slice/kubepods-pod1.slice/cri-containerd-c0.scope',
      name: 'app',
      labels: { 'io.kubernetes.container.name': 'app' },
      pod: 'checkout-6d9f7b5c4-7xkqp',
      podUid: 'uid-1',
      namespace: 'shop',
      workloadKind: 'Deployment',
      workload: 'checkout',
    },
    columns: {
      container_name: 'app',
      container_runtime: 'containerd',
      pod: 'checkout-6d9f7b5c4-7xkqp',
      pod_uid: 'uid-1',
      namespace: 'shop',
      k8s_container_name: 'app',
      workload_kind: 'Deployment',
      workload_name: 'checkout',
      containerd_namespace: 'k8s.io',
      workload: 'shop/checkout',
    },
    identity: 'k8s/shop/uid-1/app',
  },
  {
    what: 'Kubernetes pod without an owner: its pod name',
    meta: { runtime: 'containerd', name: 'app', pod: 'debug', podUid: 'uid-2', namespace: 'ops' },
    columns: { k8s_container_name: 'app', workload: 'ops/debug', workload_kind: '' },
    identity: 'k8s/ops/uid-2/app',
  },
  {
    what: 'Kubernetes via cri-dockerd: the CRI label names the container, not the Docker name',
    meta: {
      name: 'k8s_app_web-0_shop_uid-3_1',
      labels: { 'io.kubernetes.container.name': 'app' },
      pod: 'web-0',
      podUid: 'uid-3',
      namespace: 'shop',
      workloadKind: 'StatefulSet',
      workload: 'web',
    },
    columns: {
      container_name: 'k8s_app_web-0_shop_uid-3_1',
      k8s_container_name: 'app',
      workload: 'shop/web',
    },
    identity: 'k8s/shop/uid-3/app',
  },
  {
    what: 'Docker Compose service',
    meta: {
      name: 'store-db-1',
      labels: { 'com.docker.compose.project': 'store', 'com.docker.compose.service': 'db' },
    },
    columns: {
      container_name: 'store-db-1',
      container_runtime: 'docker',
      compose_project: 'store',
      compose_service: 'db',
      workload: 'store/db',
    },
    identity: 'docker/n1/store-db-1',
  },
  {
    what: 'plain Docker container: its name',
    meta: { name: 'web' },
    columns: { container_name: 'web', workload: 'web', compose_project: '', pod: '' },
    identity: 'docker/n1/web',
  },
  {
    what: 'containerd (ctr) container in a namespace: its name',
    meta: { runtime: 'containerd', runtimeNamespace: 'default', cgroupPath: '/default/redis', name: 'redis' },
    columns: { container_runtime: 'containerd', containerd_namespace: 'default', workload: 'redis' },
    identity: 'containerd/n1/default/redis',
  },
  {
    what: 'containerd record of an older collector: the namespace from the cgroupfs path',
    meta: { runtime: 'containerd', cgroupPath: '/batch/job-7', name: 'job-7' },
    columns: { containerd_namespace: 'batch', workload: 'job-7' },
    identity: 'containerd/n1/batch/job-7',
  },
  {
    what: 'a container nobody named yet',
    meta: { runtime: 'docker', name: '' },
    columns: { container_id: 'c0', container_name: '', workload: '' },
    identity: 'container/n1/c0',
  },
];

describe('workload identity', () => {
  it.each(CASES)('$what', ({ meta: over, columns, identity }) => {
    const m = meta(over);
    const cols = identityColumns(m);
    expect(Object.keys(cols)).toEqual([...IDENTITY_COLUMNS]);
    expect(cols).toMatchObject({ container_id: 'c0', image: 'img', ...columns });
    expect(workloadIdentity(m)).toBe(identity);
  });

  it('a joined row carries every identity column; a host row only workload = host', () => {
    const m = meta(CASES[0]?.meta ?? {});
    const eventRow = testEventRow('cpu_sample', {}, { node: 'n1' });
    const row = eventRow.columns;
    expect(row.join_state).toBe('pending');
    applyJoin(eventRow, m);
    expect(eventRow.meta).toBe(m);
    for (const c of IDENTITY_COLUMNS) expect(row[c], c).toBe(identityColumns(m)[c]);
    expect(row.join_state).toBe('joined');
    // A CRI pod's row: every column but the Compose labels.
    for (const c of IDENTITY_COLUMNS.filter((c) => !c.startsWith('compose_'))) expect(row[c], c).not.toBe('');
    applyHost(eventRow);
    expect(eventRow.meta).toBeUndefined();
    expect(row.join_state).toBe('host');
    for (const c of IDENTITY_COLUMNS) expect(row[c], c).toBe(HOST_IDENTITY[c]);
    expect(row.workload).toBe('host');
  });

  it('the containers row gets the columns the record has not, named as on event rows', () => {
    const rec = {
      node: 'n1',
      cgroupId: 7n,
      cgroupPath: '/default/redis',
      runtime: 'containerd',
      containerId: 'c0',
      name: 'redis',
      image: 'redis:7',
      labels: {},
      runtimeNamespace: 'default',
      podUid: null,
      updatedAtNs: 1n,
      state: 'RUNNING',
    };
    const row = containerRow(rec, identityColumns(containerMetaFromRecord(rec)));
    expect(row).toMatchObject({
      runtime_namespace: 'default',
      containerd_namespace: 'default',
      workload: 'redis',
      compose_project: '',
      k8s_container_name: '',
      pod_uid: '',
    });
  });
});
