// What the collector does with decoded kernel records before batching, in record order:
//  - cgroup lifecycle events feed the resolver (identity comes from the kernel), and v2
//    removals tell the map sampler to take the cgroup's map entries; the events go on.
//  - memory_release records (events.h type 12, a memory cgroup's last reading at its
//    removal) become the memory_sample of the v2 cgroup they belong to. On a hybrid host
//    the record names a v1 memory cgroup: runtimes give a container the same path in every
//    hierarchy, so the v2 cgroup known at that path is the one. A record with no such v2
//    cgroup (a v1-only cgroup) has no identity events could share: it is counted as
//    `unattributed`, not sent.
// Records the decoder left encoded (RawRecord offsets: kinds with no bookkeeping here) pass
// through in place.
// Order matters: a container created and removed within one batch has its v2 mkdir applied
// before its memory record looks the path up.
import { createLogger, createThrottledWarn } from '../../common/log.js';
import type { KtrailEvent } from '../../schemas/types.js';
import type { CgroupResolver } from './containers/cgroup-resolver.js';
import type { KernelEvent, MemoryRelease } from './kernel/decode.js';
import { FLAG } from './kernel/layout.js';
import type { RawRecord } from './kernel/record-writer.js';
import { type MapSampler, releaseToSample } from './sampler.js';

/**
 * Kinds this stage only passes on: the decoder may leave them encoded (RawRecord) for the
 * RecordWriter. Every other kind is looked at here and must come as a decoded event.
 */
export const PASS_THROUGH_KINDS: readonly string[] = [
  'proc_exec',
  'proc_fork',
  'proc_exit',
  'oom_kill',
  'tcp_connect',
  'tcp_accept',
  'tcp_close',
  'tcp_reset',
];

export interface KernelEventStageOptions {
  resolver?: Pick<CgroupResolver, 'apply' | 'idOfKnownPath'> | undefined;
  sampler?: Pick<MapSampler, 'cgroupRemoved' | 'memoryReleased'> | undefined;
}

/** R is RawRecord when the decoder leaves records encoded, never otherwise. */
export interface StagedBatch<R extends RawRecord = never> {
  events: Array<KtrailEvent | R>;
  malformed: number;
  /** memory_release records whose cgroup has no v2 cgroup to attribute them to. */
  unattributed: number;
}

export interface KernelEventStage {
  (decoded: { events: KernelEvent[]; malformed: number }): StagedBatch;
  (decoded: { events: Array<KernelEvent | RawRecord>; malformed: number }): StagedBatch<RawRecord>;
}

export function createKernelEventStage(options: KernelEventStageOptions = {}): KernelEventStage {
  const { resolver, sampler } = options;
  const warn = createThrottledWarn(createLogger('collector.kernel-events'));

  function observeCgroup(
    e: Extract<KernelEvent, { kind: 'cgroup_mkdir' | 'cgroup_rmdir' | 'cgroup_rename' }>,
  ) {
    try {
      if (e.kind === 'cgroup_rmdir' && e.hierarchyId === 0) sampler?.cgroupRemoved(e.cgroupId);
      resolver?.apply({
        kind: e.kind,
        cgroupId: e.cgroupId,
        path: e.path,
        tsNs: e.tsNs,
        hierarchyId: e.hierarchyId,
        truncated: (e.flags & FLAG.truncated) !== 0,
      });
    } catch (err) {
      // The event still goes out; only the collector's own bookkeeping missed it.
      warn('cgroup', { err, kind: e.kind }, 'cgroup event observer failed');
    }
  }

  /** The v2 cgroup id a memory release belongs to, if one is known. */
  function v2Id(e: MemoryRelease): bigint | undefined {
    if (e.hierarchyId === 0) return e.cgroupId;
    return resolver?.idOfKnownPath(e.path);
  }

  return (({ events, malformed }: { events: Array<KernelEvent | RawRecord>; malformed: number }) => {
    let out: Array<KtrailEvent | RawRecord> | undefined; // a copy only once a record is replaced or left out
    let unattributed = 0;
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as KernelEvent | RawRecord;
      if (typeof e === 'number') {
        out?.push(e);
        continue;
      }
      if (e.kind !== 'memory_release') {
        if (e.kind === 'cgroup_mkdir' || e.kind === 'cgroup_rmdir' || e.kind === 'cgroup_rename')
          observeCgroup(e);
        out?.push(e);
        continue;
      }
      out ??= events.slice(0, i) as Array<KtrailEvent | RawRecord>;
      const id = v2Id(e);
      if (id === undefined) unattributed++;
      else out.push(sampler ? sampler.memoryReleased(e, id) : releaseToSample(e, id));
    }
    return { events: out ?? (events as Array<KtrailEvent | RawRecord>), malformed, unattributed };
  }) as KernelEventStage;
}
