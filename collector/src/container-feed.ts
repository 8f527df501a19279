// The container metadata feed of a live collector: the cgroup resolver plus one provider per
// runtime present on this node (Docker, containerd, the node's pods), joined by the
// ContainerRegistry. It also keeps the memory sampler's targets: the cgroups of live containers.
import { existsSync, readFileSync } from 'node:fs';
import type { KtrailConfig } from '../../common/config.js';
import type { createLogger } from '../../common/log.js';
import type { BootClock } from './clock.js';
import type { ContainerFeed } from './collector.js';
import type { CgroupResolver } from './containers/cgroup-resolver.js';
import type { ContainerRecord, MetadataProvider } from './containers/types.js';
import type { MemoryTarget } from './sampler.js';

type Log = Pick<ReturnType<typeof createLogger>, 'info'>;

export interface LiveContainerFeed {
  feed: ContainerFeed<ContainerRecord>;
  resolver: CgroupResolver;
}

/**
 * Builds the feed for `config` on this node. `memoryTargets` is filled as containers come and
 * go; `clock()` is read per record, so a clock replaced after the build is the one used.
 */
export async function createLiveContainerFeed(
  config: KtrailConfig,
  cgroupRoot: string | undefined,
  clock: () => BootClock,
  memoryTargets: Map<bigint, MemoryTarget>,
  log: Log,
): Promise<LiveContainerFeed> {
  const settings = config.collector;
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
      (await import('./containers/providers/kubernetes.js')).createKubernetesProvider({ node: config.node }),
    );
  const resolver = await CgroupResolver.create(cgroupRoot === undefined ? {} : { mountPoint: cgroupRoot });
  const memoryRoot = memoryHierarchyRoot(resolver.hierarchy.mountPoint);
  let registry: InstanceType<typeof ContainerRegistry> | undefined;
  const feed: ContainerFeed<ContainerRecord> = {
    async start(onRecord) {
      const providers = await Promise.all(providerFactories.map((make) => make(resolver)));
      registry = new ContainerRegistry({
        node: config.node,
        resolver,
        providers,
        bootToWallNs: (ns) => ns + clock().wallMinusBootNs(),
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
      await resolver.scan();
      await registry.start();
    },
    async stop() {
      await registry?.stop();
    },
  };
  return { feed, resolver };
}

/**
 * Whether a runtime's socket is there; when not, the provider is off for this run and the log
 * says so once (a socket that appears later is picked up at the next start).
 */
export function runtimeSocketPresent(runtime: string, setting: string, path: string, log: Log): boolean {
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
