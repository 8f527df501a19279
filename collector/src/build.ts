// Assembles a collector from the validated config: Kafka client and sink, Avro encoders,
// the source (kernel or replay), the decoder, map/memory samplers and the container
// metadata registry. The CLI, the integration tests and the benchmark all build through
// here, so they run the same pipeline; tests and the benchmark pass their own source.
import { existsSync, readFileSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';
import type { KtrailConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { ensureTopics, type TopicNames, topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import {
  type CollectorMemoryPlan,
  mib,
  planCollectorMemory,
  resolveBudget,
  SHIPPED_LIMIT,
} from '../../common/memory-budget.js';
import { valueSubject } from '../../schemas/registration.js';
import type { ContainerRecord as AvroContainerRecord, KtrailEvent } from '../../schemas/types.js';
import { type BootClock, createBootClock, fixedBootClock } from './clock.js';
import {
  type Collector,
  type ContainerFeed,
  createCollector,
  type EventSource,
  type Sampler,
} from './collector.js';
import type { CgroupResolver } from './containers/cgroup-resolver.js';
import type { ContainerRecord, MetadataProvider } from './containers/types.js';
import { createKafkaSink, type MessageSink } from './kafka-sink.js';
import { configuredCgroupV2Root, type KernelCapture } from './kernel/addon.js';
import { createDecoder } from './kernel/decode.js';
import { createRecordWriter, type RawRecord } from './kernel/record-writer.js';
import { createReplaySource, type ReplaySource } from './kernel/replay-source.js';
import { createKernelEventStage, PASS_THROUGH_KINDS } from './kernel-events.js';
import { registerKernelMapMetrics } from './kernel-maps.js';
import { createRegistrySink } from './registry-sink.js';
import { createSampler, type MapSampler, type MemoryTarget } from './sampler.js';
import { openSequenceStore } from './sequence-store.js';
import { createKernelSource, type KernelSource } from './sources.js';
import { openUnsentStats } from './unsent-stats.js';
import { collectorCodec } from './wire-codec.js';

export const COLLECTOR_VERSION = process.env.KTRAIL_VERSION ?? '0.1.0';

export interface BuildOptions {
  config: KtrailConfig;
  /** Replaces the configured source (tests, benchmark). */
  source?: EventSource;
  /** Replaces the Kafka sink. */
  sink?: MessageSink;
  clock?: BootClock;
  registry?: Registry;
  /** Container metadata (cgroup resolver + Docker): default on for the eBPF source. */
  containers?: boolean;
  /** Replaces the container registry as the source of container records (tests). */
  containerFeed?: ContainerFeed<ContainerRecord>;
  /** Map and memory samplers: default on for the eBPF source. */
  samplers?: boolean;
  /** Create or check the topics at start (in the background while Kafka is down). Default true. */
  ensureTopics?: boolean;
  /** Replay pacing when the source is a capture file: events/s (0 = as fast as possible), loop. */
  replay?: { rate: number; loop: boolean };
  /** Called when the collector must exit (topics that break co-partitioning). */
  onFatal?: (err: Error) => void;
}

export interface BuiltCollector {
  collector: Collector;
  topics: TopicNames;
  /** The open kernel capture of the eBPF source (after start), for diagnostics and tests. */
  readonly capture: KernelCapture | undefined;
  /** Starts the collector and the background topic check. */
  start(): Promise<void>;
  stop: Collector['stop'];
}

/** Container records from the containers module use undefined for Avro nulls. */
export function toAvroContainer(r: ContainerRecord): AvroContainerRecord {
  return {
    node: r.node,
    cgroupId: r.cgroupId,
    cgroupPath: r.cgroupPath,
    runtime: r.runtime,
    containerId: r.containerId,
    name: r.name,
    image: r.image,
    imageId: r.imageId ?? null,
    labels: r.labels,
    podUid: r.podUid ?? null,
    podName: r.podName ?? null,
    namespace: r.namespace ?? null,
    workloadKind: r.workloadKind ?? null,
    workloadName: r.workloadName ?? null,
    cpuRequestMillis: r.cpuRequestMillis ?? null,
    cpuLimitMillis: r.cpuLimitMillis ?? null,
    memoryRequestBytes: r.memoryRequestBytes ?? null,
    memoryLimitBytes: r.memoryLimitBytes ?? null,
    startedAtNs: r.startedAtNs ?? null,
    stoppedAtNs: r.stoppedAtNs ?? null,
    updatedAtNs: r.updatedAtNs,
    state: r.state,
    runtimeNamespace: r.runtimeNamespace ?? null,
  };
}

export async function buildCollector(options: BuildOptions): Promise<BuiltCollector> {
  const { config } = options;
  const log = createLogger('collector.build', { node: config.node });
  const settings = config.collector;
  const topics = topicNames(config.kafka.topicPrefix);
  const ebpf = options.source === undefined && settings.source === 'ebpf';
  // Queue bounds from the memory budget, so an outage can't grow the process past its limit
  // (first: a budget that can't hold the process is a configuration error, before anything opens).
  const memory = planCollectorMemory({
    budget: resolveBudget(
      { name: 'collector.memoryBudgetBytes', value: settings.memoryBudgetBytes },
      SHIPPED_LIMIT.collector,
    ),
    source: ebpf ? 'ebpf' : 'replay',
    ringBufferBytes: settings.ringBufferBytes,
    bufferMaxBytes: settings.bufferMaxBytes,
    bufferMaxMessages: settings.bufferMaxMessages,
  });
  log.info(
    {
      budget: memory.budget,
      baseline: mib(memory.baselineBytes),
      kernel: mib(memory.kernelBytes),
      headroom: mib(memory.headroomBytes),
      bufferMaxBytes: memory.bufferMaxBytes,
      bufferMaxMessages: memory.bufferMaxMessages,
      containersQueueBytes: memory.containersQueueBytes,
      statsQueueBytes: memory.statsQueueBytes,
    },
    `memory budget ${mib(memory.budget.bytes)}: events buffer ${mib(memory.bufferMaxBytes)}`,
  );
  if (options.registry) registerMemoryMetrics(options.registry, memory);
  let clock = options.clock ?? createBootClock();
  const kafka = createKafka(
    {
      ...kafkaClientOptions(config.kafka),
      // Short: the delivery loop has its own backoff and must get answers while Kafka is down.
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 },
    },
    createLogger('collector.kafka'),
  );
  const codec = collectorCodec(config, topics);
  const kafkaSink = options.sink ?? createKafkaSink({ kafka });
  const sink =
    codec.registration === undefined
      ? kafkaSink
      : createRegistrySink(
          kafkaSink,
          codec.registration,
          new Map([topics.events, topics.containers, topics.stats].map((t) => [t, valueSubject(t)])),
          options.registry,
        );

  let source: EventSource;
  const samplers: Sampler<KtrailEvent>[] = [];
  const memoryTargets = new Map<bigint, MemoryTarget>();
  let containers: ContainerFeed<ContainerRecord> | undefined;
  let resolver: CgroupResolver | undefined;
  let mapSampler: MapSampler | undefined;
  let kernelSource: KernelSource | undefined;

  // The host's v2 hierarchy: the resolver walks it and the cgroup_skb programs attach to its
  // root (in a pod, /sys/fs/cgroup is the pod's own). A hybrid host's cgroupfs has it in unified/.
  const cgroupRoot = configuredCgroupV2Root(settings.cgroupRoot);
  if (options.source) source = options.source;
  else if (settings.source === 'ebpf') {
    const kernel = createKernelSource({
      bpfObjectDir: settings.bpfObjectDir,
      ringBufferBytes: settings.ringBufferBytes,
      programs: settings.programs,
      cgroupRoot,
    });
    source = kernel;
    kernelSource = kernel;
    if (options.samplers ?? true) {
      const sampler = createSampler({
        intervalMs: settings.sampleIntervalMs,
        clock,
        readMap: (name) => kernel.capture?.readMap(name, 'sum') ?? [],
        takeMapEntries: (name, ids) => kernel.capture?.takeMapEntries(name, ids, 'sum') ?? [],
        mapCapacity: (name) => kernel.capture?.mapInfo(name).maxEntries,
        memoryTargets: () => memoryTargets.values(),
      });
      samplers.push(sampler);
      mapSampler = sampler;
      if (options.registry) registerKernelMapMetrics(options.registry, sampler);
    }
  } else {
    if (settings.replayFile === undefined)
      throw new ConfigError(
        'collector.replayFile: required when collector.source is replay (or use --replay FILE)',
      );
    const replay = openReplay(settings.replayFile, options.replay ?? { rate: 0, loop: false });
    // Replayed records carry the recording host's boot clock: use its boot id and offset.
    if (!options.clock) clock = fixedBootClock(replay.header.bootId, replay.header.wallMinusBootNs);
    source = replay;
  }

  if (options.containerFeed) containers = options.containerFeed;
  else if (options.containers ?? ebpf) {
    // Loaded only when used; the containerd and Kubernetes providers bring grpc-js and a client.
    const [{ ContainerRegistry }, { CgroupResolver }, { createDockerProvider }] = await Promise.all([
      import('./containers/index.js'),
      import('./containers/cgroup-resolver.js'),
      import('./containers/providers/docker.js'),
    ]);
    // Runtimes present on this node: a socket that exists (Docker, containerd), and the
    // node-scoped pod watch when collector.kubernetes is on. A runtime whose socket is absent
    // (a CRI-O node has no containerd) is off for this run, said once.
    const providerFactories: Array<(cgroups: CgroupResolver) => Promise<MetadataProvider>> = [];
    if (runtimeSocketPresent('docker', 'collector.dockerSocket', settings.dockerSocket, log))
      providerFactories.push(async (cgroups) =>
        createDockerProvider({ socketPath: settings.dockerSocket, node: config.node, cgroups }),
      );
    if (runtimeSocketPresent('containerd', 'collector.containerdSocket', settings.containerdSocket, log))
      providerFactories.push(async (cgroups) =>
        (await import('./containers/providers/containerd.js')).createContainerdProvider({
          socketPath: settings.containerdSocket,
          node: config.node,
          cgroups,
        }),
      );
    if (settings.kubernetes)
      providerFactories.push(async () =>
        (await import('./containers/providers/kubernetes.js')).createKubernetesProvider({
          node: config.node,
        }),
      );
    resolver = await CgroupResolver.create(cgroupRoot === undefined ? {} : { mountPoint: cgroupRoot });
    const r = resolver;
    const mount = r.hierarchy.mountPoint;
    const memoryRoot = memoryHierarchyRoot(mount);
    let registry: InstanceType<typeof ContainerRegistry> | undefined;
    containers = {
      async start(onRecord) {
        const providers = await Promise.all(providerFactories.map((make) => make(r)));
        registry = new ContainerRegistry({
          node: config.node,
          resolver: r,
          providers,
          bootToWallNs: (ns) => ns + clock.wallMinusBootNs(),
          onRecord(record) {
            // The memory sampler reads the cgroups of live containers.
            if (record.cgroupId !== 0n) {
              if (record.state === 'REMOVED') memoryTargets.delete(record.cgroupId);
              else
                memoryTargets.set(record.cgroupId, {
                  cgroupId: record.cgroupId,
                  dir: memoryRoot + record.cgroupPath,
                });
            }
            onRecord(record);
          },
        });
        await r.scan();
        await registry.start();
      },
      async stop() {
        await registry?.stop();
      },
    };
  }

  // Kinds the stage only passes on are written from the records themselves, no event objects.
  const records = createRecordWriter(PASS_THROUGH_KINDS);
  const decoder = createDecoder(records.types);
  const stage = createKernelEventStage({ resolver, sampler: mapSampler });
  // Live capture continues its per-boot sequence across restarts and sends the stats a
  // previous run could not; a replay (tests, benchmarks) numbers each run from 0.
  const sequenceStore = ebpf ? openSequenceStore(config.node, clock.bootId) : undefined;
  const unsentStats = ebpf ? openUnsentStats(config.node) : undefined;
  const collector = createCollector<KtrailEvent | RawRecord, ContainerRecord>({
    node: config.node,
    collectorVersion: COLLECTOR_VERSION,
    settings: {
      ...settings,
      bufferMaxBytes: memory.bufferMaxBytes,
      bufferMaxMessages: memory.bufferMaxMessages,
      containersQueueBytes: memory.containersQueueBytes,
      containersQueueMessages: memory.containersQueueMessages,
      statsQueueBytes: memory.statsQueueBytes,
      statsQueueMessages: memory.statsQueueMessages,
    },
    topics,
    clock,
    source,
    decode: (buf, count) => {
      records.setBatch(buf);
      return stage(decoder.decode(buf, count));
    },
    eventBatch: {
      writeEvent: (e, buf, pos) =>
        typeof e === 'number' ? records.write(e, buf, pos) : codec.batch.writeEvent(e, buf, pos),
      frame: codec.batch.frame,
      kindOf: records.kindOf,
    },
    encodeStats: (s) => codec.stats.encode(s),
    sink,
    samplers,
    ...(containers
      ? {
          containers,
          encodeContainer: (r: ContainerRecord) => codec.container.encode(toAvroContainer(r)),
          containerKey: (r: ContainerRecord) => r.cgroupId.toString(),
        }
      : {}),
    ...(options.registry ? { registry: options.registry } : {}),
    ...(sequenceStore ? { sequenceStore } : {}),
    ...(unsentStats ? { unsentStats } : {}),
  });

  let topicCheck: Promise<void> | undefined;
  let stopped = false;
  return {
    collector,
    topics,
    get capture() {
      return kernelSource?.capture;
    },
    async start() {
      // Topics first (so the first sends don't race their creation), but never wait long:
      // with Kafka down the collector must still start capturing and buffering.
      if (options.ensureTopics ?? true) {
        topicCheck = checkTopics();
        await Promise.race([topicCheck, new Promise((r) => setTimeout(r, 5_000).unref())]);
      }
      // Registration too, but only a short wait: the registry sink holds the messages
      // until it is done, and capture must start while the registry is down.
      if (codec.registration !== undefined) {
        const registered = codec.registration.run();
        await Promise.race([registered, new Promise((r) => setTimeout(r, 5_000).unref())]);
      }
      await collector.start();
    },
    async stop() {
      stopped = true;
      const final = await collector.stop();
      codec.registration?.close();
      await topicCheck;
      return final;
    },
  };

  /** Creates/checks topics; retries quietly while Kafka is down, fatal on a layout mismatch. */
  async function checkTopics(): Promise<void> {
    for (let attempt = 1; !stopped; attempt++) {
      const admin = kafka.admin();
      try {
        await admin.connect();
        const result = await ensureTopics(admin, {
          prefix: config.kafka.topicPrefix,
          partitions: config.kafka.partitions,
          replicationFactor: config.kafka.replicationFactor,
        });
        log.info(
          { created: result.created, replication: result.replication, fewerReplicas: result.fewerReplicas },
          'topics ready; events and containers are co-partitioned',
        );
        return;
      } catch (err) {
        if (err instanceof ConfigError) {
          log.fatal({ err }, 'kafka topics do not fit ktrail');
          options.onFatal?.(err);
          return;
        }
        if (attempt === 1 || attempt % 10 === 0)
          log.warn({ err, attempt }, 'cannot check topics yet; retrying');
        await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * attempt)).unref());
      } finally {
        await admin.disconnect().catch(() => {});
      }
    }
  }
}

/** The budget and the bounds derived from it, for dashboards next to the buffer gauges. */
function registerMemoryMetrics(registry: Registry, plan: CollectorMemoryPlan): void {
  const gauges: Array<[string, string, number]> = [
    [
      'ktrail_collector_memory_budget_bytes',
      'memory budget the queue bounds are derived from',
      plan.budget.bytes,
    ],
    [
      'ktrail_collector_buffer_max_bytes',
      'bound of the events buffer (collector.bufferMaxBytes)',
      plan.bufferMaxBytes,
    ],
  ];
  for (const [name, help, value] of gauges) new Gauge({ name, help, registers: [registry] }).set(value);
}

/** A replay source, or a ConfigError naming the setting when the file can't be used. */
export function openReplay(file: string, options: { rate: number; loop: boolean }): ReplaySource {
  try {
    return createReplaySource(file, options);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`collector.replayFile: cannot replay ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Whether a runtime's socket is there; when not, the provider is off for this run and the log
 * says so once (a socket that appears later is picked up at the next start).
 */
export function runtimeSocketPresent(
  runtime: string,
  setting: string,
  path: string,
  log: Pick<ReturnType<typeof createLogger>, 'info'>,
): boolean {
  if (existsSync(path)) return true;
  log.info(
    { runtime, socket: path, setting },
    `${runtime} socket not found: ${runtime} metadata provider off`,
  );
  return false;
}

/**
 * Where memory.* files live for a cgroup path: the v2 mount when it has the memory
 * controller, else (hybrid hosts such as these: v2 without controllers) the v1 memory
 * hierarchy, where runtimes create the same relative path (/docker/<id>, /kubepods/...).
 */
function memoryHierarchyRoot(v2Mount: string): string {
  const controllers = readFileOr(`${v2Mount}/cgroup.controllers`);
  if (controllers.split(/\s+/).includes('memory')) return v2Mount;
  for (const line of readFileOr('/proc/self/mounts').split('\n')) {
    const [, mountPoint, fsType, options] = line.split(' ');
    if (fsType === 'cgroup' && options?.split(',').includes('memory') && mountPoint) return mountPoint;
  }
  return v2Mount;
}

function readFileOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
