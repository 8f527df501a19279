// One realistic value per schema, with every event kind and the u64 edge values. They seed
// the golden fixtures (test/fixtures/avro/) and the tests; typed against schemas/types.ts,
// so a schema change that the samples don't follow fails tsc.
import type {
  Alert,
  CollectorStats,
  ContainerRecord,
  DeadLetter,
  EnrichedBatch,
  EventBatch,
  KtrailEvent,
  SchemaTypes,
} from './types.js';

const U64_MAX = 2n ** 64n - 1n;
const header = (tsNs: bigint, cgroupId: bigint, pid: number, flags = 0) => ({
  tsNs,
  cgroupId,
  pid,
  tgid: pid,
  flags,
});
const conn = {
  family: 2,
  sport: 43512,
  dport: 5432,
  saddr: '10.1.2.3',
  daddr: '10.1.9.9',
  sockCookie: 0x1234_5678_9abc_def0n,
};

export function sampleEvents(): KtrailEvent[] {
  return [
    {
      kind: 'proc_exec',
      ...header(U64_MAX, 12345n, 4242, 1),
      ppid: 4000,
      uid: 1000,
      gid: 1000,
      argsCount: 3,
      argsSize: 27,
      comm: 'curl',
      filename: '/usr/bin/curl',
      args: ['curl', '-s', 'http://svc.local/ä'],
    },
    {
      kind: 'proc_fork',
      ...header(1n, 12345n, 4000),
      parentPid: 4000,
      parentTgid: 4000,
      childPid: 4242,
      childTgid: 4242,
      comm: 'sh',
    },
    {
      kind: 'proc_exit',
      ...header(2n, 12345n, 4242),
      ppid: 4000,
      exitCode: 7,
      signal: 0,
      coreDumped: 0,
      startNs: 1n,
      cpuNs: 987_654_321n,
      comm: 'curl',
    },
    { kind: 'cgroup_mkdir', ...header(3n, 777n, 1), level: 2, hierarchyId: 0, path: '/docker/abc123' },
    { kind: 'cgroup_rmdir', ...header(4n, 777n, 1), level: 2, hierarchyId: 0, path: '/docker/abc123' },
    { kind: 'cgroup_rename', ...header(5n, 777n, 1), level: 2, hierarchyId: 0, path: '/docker/def456' },
    {
      kind: 'oom_kill',
      ...header(6n, 888n, 4294967295),
      victimPid: 4294967295,
      victimUid: 0,
      totalVmKb: 1_048_576n,
      anonRssKb: 524_288n,
      fileRssKb: 1024n,
      shmemRssKb: 0n,
      comm: 'java',
    },
    { kind: 'tcp_connect', ...header(7n, 12345n, 4242), ...conn },
    { kind: 'tcp_accept', ...header(8n, 999n, 0), ...conn, family: 10, saddr: '::1', daddr: 'fd00::1' },
    {
      kind: 'tcp_close',
      ...header(9n, 12345n, 0, 4),
      ...conn,
      bytesSent: 1_000_000n,
      bytesReceived: 2_000_000n,
      durationNs: 5_000_000_000n,
      retransmits: 3,
      resets: 1,
    },
    { kind: 'tcp_reset', ...header(10n, 12345n, 0), ...conn, direction: 1 },
    {
      kind: 'cpu_sample',
      ...header(11n, 12345n, 0),
      cpuNs: 250_000_000n,
      switches: 1200n,
      intervalNs: 1_000_000_000n,
    },
    {
      kind: 'net_sample',
      ...header(12n, 12345n, 0),
      rxBytes: 10n,
      rxPackets: 1n,
      txBytes: U64_MAX,
      txPackets: 2n ** 63n,
      intervalNs: 1_000_000_000n,
    },
    {
      kind: 'block_sample',
      ...header(13n, 12345n, 0),
      readBytes: 4096n,
      writeBytes: 1_048_576n,
      readIos: 1n,
      writeIos: 256n,
      latencyHist: Array.from({ length: 32 }, (_, i) => BigInt(i % 5)),
      intervalNs: 1_000_000_000n,
    },
    {
      kind: 'memory_sample',
      ...header(14n, 12345n, 0),
      currentBytes: 100_000_000n,
      peakBytes: 150_000_000n,
      limitBytes: 0n,
      oomEvents: 1n,
    },
  ];
}

export function sampleEventBatch(): EventBatch {
  return {
    node: 'node-a',
    bootId: '5d2b9f0e-5d1c-4c1e-9f7e-2b8f1c3d4e5f',
    collectorVersion: '0.1.0',
    sequence: 42n,
    producedAtNs: 1_764_000_000_123_456_789n,
    bootEpochNs: 1_763_990_000_000_000_000n,
    events: sampleEvents(),
  };
}

export function sampleContainerRecord(): ContainerRecord {
  return {
    node: 'node-a',
    cgroupId: 12345n,
    cgroupPath:
      '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-abc.scope',
    runtime: 'containerd',
    containerId: 'abc',
    name: 'api',
    image: 'registry.local/api:1.2.3',
    imageId: 'sha256:0123456789abcdef',
    labels: { app: 'api', 'io.kubernetes.pod.name': 'api-7d9c-xyz' },
    podUid: '1234-5678',
    podName: 'api-7d9c-xyz',
    namespace: 'prod',
    workloadKind: 'Deployment',
    workloadName: 'api',
    cpuRequestMillis: 250n,
    cpuLimitMillis: null,
    memoryRequestBytes: 268_435_456n,
    memoryLimitBytes: 536_870_912n,
    startedAtNs: 1_764_000_000_000_000_000n,
    stoppedAtNs: null,
    updatedAtNs: 1_764_000_000_500_000_000n,
    state: 'RUNNING',
    runtimeNamespace: 'k8s.io',
  };
}

export function sampleCollectorStats(): CollectorStats {
  return {
    node: 'node-a',
    bootId: '5d2b9f0e-5d1c-4c1e-9f7e-2b8f1c3d4e5f',
    collectorVersion: '0.1.0',
    firstSequence: 40n,
    lastSequence: 42n,
    intervalStartNs: 1_764_000_000_000_000_000n,
    intervalEndNs: 1_764_000_010_000_000_000n,
    eventsByKind: { proc_exec: 10n, cpu_sample: 300n },
    kernelDropsByProgram: { process: 0n, tcp: 2n },
    bufferDropsByReason: { buffer_full: 5n },
    malformedRecords: 1n,
    eventsDelivered: 305n,
    bytesSent: 65_536n,
    oldestUnsentAgeMs: 12n,
    cpuNs: 45_000_000n,
    rssBytes: 98_304_000n,
    programRunTimeNs: { kt_proc_exec: 1_200_000n, kt_cpu_switch: 8_500_000n },
    programRunCount: { kt_proc_exec: 1_000n, kt_cpu_switch: 20_000n },
  };
}

export function sampleDeadLetter(): DeadLetter {
  return {
    sourceTopic: 'ktrail.events',
    sourcePartition: 3,
    sourceOffset: 123_456n,
    key: Buffer.from('node-a'),
    reason: 'unknown_schema',
    error: 'unknown writer schema fingerprint',
    raw: Buffer.from([0xc3, 0x01, 0, 1, 2, 3, 4, 5, 6, 7, 0xff]),
    consumerGroup: 'ktrail-processor',
    failedAtNs: 1_764_000_000_000_000_000n,
    rawSize: 11n,
    rawSha256: null,
  };
}

/** Every event kind once, joined (two containers), pending and on the host. */
export function sampleEnrichedBatch(): EnrichedBatch {
  const base = sampleEventBatch();
  return {
    node: base.node,
    sourcePartition: 3,
    firstOffset: 1_000n,
    lastOffset: 1_009n,
    firstEvent: 0,
    containers: [
      {
        containerId: 'abc',
        containerName: 'api',
        image: 'registry.local/api:1.2.3',
        pod: 'api-7d9c-xyz',
        namespace: 'prod',
        workload: 'prod/api',
        containerRuntime: 'containerd',
        podUid: '1234-5678',
        k8sContainerName: 'api',
        workloadKind: 'Deployment',
        workloadName: 'api',
        composeProject: '',
        composeService: '',
        containerdNamespace: 'k8s.io',
      },
      {
        containerId: 'def',
        containerName: 'shop-web-1',
        image: 'shop/web:ä',
        pod: '',
        namespace: '',
        workload: 'shop/web',
        containerRuntime: 'docker',
        podUid: '',
        k8sContainerName: '',
        workloadKind: '',
        workloadName: '',
        composeProject: 'shop',
        composeService: 'web',
        containerdNamespace: 'moby',
      },
    ],
    events: base.events.map((event, i) => ({
      timeNs: 1_763_990_000_000_000_000n + BigInt(i),
      joinState: i % 3 === 0 ? 'joined' : i % 3 === 1 ? 'pending' : 'host',
      container: i % 3 === 0 ? (i / 3) % 2 : -1,
      event,
    })),
  };
}

export function sampleAlert(): Alert {
  return {
    kind: 'oom_kill',
    node: 'node-a',
    container: 'abc',
    containerName: 'api',
    namespace: 'prod',
    pod: 'api-7d9c-xyz',
    timeNs: 1_764_000_000_123_456_789n,
    details: { victimPid: '4242', comm: 'java', anonRssKb: '2097152' },
  };
}

export const SAMPLES: { [N in keyof SchemaTypes]: () => SchemaTypes[N] } = {
  EventBatch: sampleEventBatch,
  ContainerRecord: sampleContainerRecord,
  CollectorStats: sampleCollectorStats,
  DeadLetter: sampleDeadLetter,
  EnrichedBatch: sampleEnrichedBatch,
  Alert: sampleAlert,
};
