// The memory limit the kernel enforces on this process: the memory cgroup it runs in.
//
// cgroup v2: `memory.max` of the process's cgroup (the `0::<path>` line of /proc/self/cgroup)
// under the cgroup2 mount, and of every ancestor up to the mount (a parent's limit binds its
// children too); "max" means no limit. Hybrid hosts (these machines: v2 at
// /sys/fs/cgroup/unified without controllers) and v1 hosts keep the memory controller in v1:
// `memory.limit_in_bytes` of the `memory` hierarchy, where "no limit" is a huge page-aligned
// number (9223372036854771712). The mount's root (mountinfo field 4) is subtracted from the
// path, so a container that sees its own cgroup as the mount root (cgroup namespace, or a
// bind mount of its subtree) finds its files too.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupMemoryLimit {
  /** The tightest limit up the hierarchy in bytes; undefined when none applies. */
  limitBytes: number | undefined;
  /** The file that limit came from (or the first one read, when there is no limit). */
  file: string | undefined;
  version: 1 | 2 | undefined;
}

/** Where the facts come from; tests point these at files of their own. */
export interface CgroupSources {
  /** /proc/self/cgroup */
  procCgroup: string;
  /** /proc/self/mountinfo */
  mountInfo: string;
}

const PROC: CgroupSources = { procCgroup: '/proc/self/cgroup', mountInfo: '/proc/self/mountinfo' };

/** v1 writes "unlimited" as PAGE_COUNTER_MAX pages (2^63 rounded to a page); anything this big is no limit. */
const UNLIMITED_FROM = 2 ** 60;

export interface Mount {
  /** The path inside its filesystem the mount shows at its mount point (mountinfo field 4). */
  root: string;
  mountPoint: string;
  fsType: string;
  /** The device or pseudo-name mounted (`/dev/vda`, `tmpfs`). */
  source: string;
  superOptions: string[];
}

/** The process's memory limit from its cgroup (v2 first, then the v1 memory hierarchy). */
export function readCgroupMemoryLimit(sources: CgroupSources = PROC): CgroupMemoryLimit {
  const memberships = parseProcCgroup(readOr(sources.procCgroup));
  const mounts = parseMountInfo(readOr(sources.mountInfo));

  const v2Path = memberships.find((m) => m.hierarchy === '0' && m.controllers.length === 0)?.path;
  const v2Mount = mounts.find((m) => m.fsType === 'cgroup2');
  if (v2Path !== undefined && v2Mount !== undefined) {
    const found = tightest(cgroupDir(v2Mount, v2Path), v2Mount.mountPoint, 'memory.max', 2);
    if (found !== undefined) return found;
  }
  const v1Path = memberships.find((m) => m.controllers.includes('memory'))?.path;
  const v1Mount = mounts.find((m) => m.fsType === 'cgroup' && m.superOptions.includes('memory'));
  if (v1Path !== undefined && v1Mount !== undefined) {
    const found = tightest(cgroupDir(v1Mount, v1Path), v1Mount.mountPoint, 'memory.limit_in_bytes', 1);
    if (found !== undefined) return found;
  }
  return { limitBytes: undefined, file: undefined, version: undefined };
}

/**
 * The smallest limit in `file` from `dir` up to the mount point; undefined when the
 * hierarchy has no such file anywhere (no memory controller there).
 */
function tightest(
  dir: string,
  mountPoint: string,
  name: string,
  version: 1 | 2,
): CgroupMemoryLimit | undefined {
  let result: CgroupMemoryLimit | undefined;
  for (let at = dir; ; at = parentOf(at)) {
    const file = join(at, name);
    const text = readOrUndefined(file);
    if (text !== undefined) {
      const bytes = parseLimit(text);
      result ??= { limitBytes: undefined, file, version };
      if (bytes !== undefined && (result.limitBytes === undefined || bytes < result.limitBytes))
        result = { limitBytes: bytes, file, version };
    }
    if (at === mountPoint || !at.startsWith(`${mountPoint}/`)) return result;
  }
}

/** `memory.max` / `memory.limit_in_bytes` contents -> bytes, undefined for "max" or v1's unlimited. */
export function parseLimit(text: string): number | undefined {
  const value = text.trim();
  if (value === 'max' || value === '' || !/^\d+$/.test(value)) return undefined;
  const bytes = Number(value);
  return bytes >= UNLIMITED_FROM ? undefined : bytes;
}

/** The directory of cgroup `path` under `mount`, with the mount's own root taken off the path. */
function cgroupDir(mount: Mount, path: string): string {
  const root = mount.root === '/' ? '' : mount.root;
  if (root !== '' && path !== root && !path.startsWith(`${root}/`)) return mount.mountPoint;
  const rel = path.slice(root.length);
  return rel === '' || rel === '/' ? mount.mountPoint : join(mount.mountPoint, rel);
}

function parentOf(dir: string): string {
  const cut = dir.lastIndexOf('/');
  return cut <= 0 ? '/' : dir.slice(0, cut);
}

/** /proc/self/cgroup lines: `hierarchy-id:controllers:path` (v2: `0::path`). */
export function parseProcCgroup(
  text: string,
): Array<{ hierarchy: string; controllers: string[]; path: string }> {
  const out: Array<{ hierarchy: string; controllers: string[]; path: string }> = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    out.push({
      hierarchy: m[1] as string,
      controllers: (m[2] as string).split(',').filter(Boolean),
      path: m[3] as string,
    });
  }
  return out;
}

/** The mounts of /proc/self/mountinfo (proc(5): fields after " - " are type, source, super options). */
export function parseMountInfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    const [fsType, source = '', superOptions = ''] = right.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (fsType === undefined || root === undefined || mountPoint === undefined) continue;
    out.push({
      root: unescapeMount(root),
      mountPoint: unescapeMount(mountPoint),
      fsType,
      source: unescapeMount(source),
      superOptions: superOptions.split(','),
    });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

function readOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readOr(file: string): string {
  return readOrUndefined(file) ?? '';
}
