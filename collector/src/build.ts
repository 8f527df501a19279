// Assembles a collector from the validated config: Kafka client and sink, Avro encoders,
// the source (kernel or replay), the decoder, map/memory samplers and the container
// metadata registry. The CLI, the integration tests and the benchmark all build through
// here, so they run the same pipeline; tests and the benchmark pass their own source.

import type { Kafka } from 'kafkajs';
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
import { createLiveContainerFeed } from './container-feed.js';
import type { CgroupResolver } from './containers/cgroup-resolver.js';
import type { ContainerRecord } from './containers/types.js';
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
  const memory = planMemory(settings, ebpf, log, options.registry);
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
  const sink = buildSink(options.sink ?? createKafkaSink({ kafka }), codec, topics, options.registry);

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
      mapSampler = kernelSampler(kernel, settings.sampleIntervalMs, clock, memoryTargets, options.registry);
      samplers.push(mapSampler);
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
    const live = await createLiveContainerFeed(config, cgroupRoot, () => clock, memoryTargets, log);
    containers = live.feed;
    resolver = live.resolver;
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
      typeOf: records.typeOf,
      kindOfType: records.kindOfType,
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
        topicCheck = checkTopics(kafka, config, log, () => stopped, options.onFatal);
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
}

/** Registers the collector's schemas first when the wire format is the registry's. */
function buildSink(
  kafkaSink: MessageSink,
  codec: ReturnType<typeof collectorCodec>,
  topics: TopicNames,
  registry: Registry | undefined,
): MessageSink {
  if (codec.registration === undefined) return kafkaSink;
  const subjects = new Map([topics.events, topics.containers, topics.stats].map((t) => [t, valueSubject(t)]));
  return createRegistrySink(kafkaSink, codec.registration, subjects, registry);
}

/** The sampler of the kernel's per-cgroup maps and of the live containers' memory files. */
function kernelSampler(
  kernel: KernelSource,
  intervalMs: number,
  clock: BootClock,
  memoryTargets: Map<bigint, MemoryTarget>,
  registry: Registry | undefined,
): MapSampler {
  const sampler = createSampler({
    intervalMs,
    clock,
    readMap: (name) => kernel.capture?.readMap(name, 'sum') ?? [],
    takeMapEntries: (name, ids) => kernel.capture?.takeMapEntries(name, ids, 'sum') ?? [],
    mapCapacity: (name) => kernel.capture?.mapInfo(name).maxEntries,
    memoryTargets: () => memoryTargets.values(),
  });
  if (registry) registerKernelMapMetrics(registry, sampler);
  return sampler;
}

/** Creates/checks topics; retries quietly while Kafka is down, fatal on a layout mismatch. */
async function checkTopics(
  kafka: Kafka,
  config: KtrailConfig,
  log: ReturnType<typeof createLogger>,
  stopped: () => boolean,
  onFatal: ((err: Error) => void) | undefined,
): Promise<void> {
  for (let attempt = 1; !stopped(); attempt++) {
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
        onFatal?.(err);
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

/**
 * Queue bounds from the memory budget, so an outage can't grow the process past its limit
 * (first: a budget that can't hold the process is a configuration error, before anything opens).
 */
function planMemory(
  settings: KtrailConfig['collector'],
  ebpf: boolean,
  log: ReturnType<typeof createLogger>,
  registry: Registry | undefined,
): CollectorMemoryPlan {
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
  if (registry) registerMemoryMetrics(registry, memory);
  return memory;
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
