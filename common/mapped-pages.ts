// Handing a mapped file's resident pages back to the kernel (madvise MADV_PAGEOUT through the
// codec addon, native/src/memory.cc). A library's pages stay mapped, and counted in the
// process's memory, until the kernel is short of memory; pages run once at startup need not
// wait for that. Read-only mappings only: a writable private one holds relocated data, which
// is anonymous memory once written and has nowhere to go without swap.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { type CodecAddon, loadCodecAddon } from './native-codec.js';

/** One line of /proc/<pid>/maps. */
export interface Mapping {
  start: bigint;
  end: bigint;
  /** `r-xp`, `r--p`, `rw-p`, ... */
  perms: string;
  /** The mapped file, or '' (anonymous) or a pseudo-name such as `[heap]`. */
  path: string;
}

const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/;

/** /proc/<pid>/maps text -> its mappings; lines of another form are left out. */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = MAPS_LINE.exec(line);
    if (m === null) continue;
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3] as string,
      path: m[4] as string,
    });
  }
  return out;
}

/** Resident bytes of the mappings of the file named `fileName`, from /proc/<pid>/smaps text. */
export function residentBytesOfFile(
  fileName: string,
  smaps = readFileSync('/proc/self/smaps', 'utf8'),
): number {
  let inFile = false;
  let kib = 0;
  for (const line of smaps.split('\n')) {
    const header = MAPS_LINE.exec(line);
    if (header !== null) inFile = basename(header[4] as string) === fileName;
    else if (inFile && line.startsWith('Rss:')) kib += Number(/^Rss:\s+(\d+)/.exec(line)?.[1] ?? 0);
  }
  return kib * 1024;
}

export interface PageOutResult {
  /** Read-only mappings of the file that were advised. */
  mappings: number;
  /** Their total length (resident or not). */
  advisedBytes: number;
  /** The file's resident bytes in this process, before and after. */
  residentBefore: number;
  residentAfter: number;
}

/**
 * Pages out this process's read-only mappings of the file whose name is `fileName` (its last
 * path component). Pages another process maps too are left alone by the kernel, and any page
 * used again faults back in from the file. Throws the addon's error (errno EINVAL before
 * Linux 5.4) on the first mapping refused.
 */
export function pageOutMappedFile(
  fileName: string,
  addon: Pick<CodecAddon, 'pageOut'> = loadCodecAddon(),
  maps = (): string => readFileSync('/proc/self/maps', 'utf8'),
): PageOutResult {
  const residentBefore = residentBytesOfFile(fileName);
  let mappings = 0;
  let advisedBytes = 0;
  for (const m of parseMaps(maps())) {
    if (basename(m.path) !== fileName || m.perms[1] === 'w') continue;
    const length = Number(m.end - m.start);
    addon.pageOut(m.start, length);
    mappings++;
    advisedBytes += length;
  }
  return { mappings, advisedBytes, residentBefore, residentAfter: residentBytesOfFile(fileName) };
}
