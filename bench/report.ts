// docs/benchmarks.md is written by the benchmarks themselves: each replaces its own
// `## <title>` section, so numbers in the doc always come from a run, never by hand.
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename } from 'node:path';
import { type Mount, parseMountInfo } from '../common/cgroup-memory.js';

const DOC = new URL('../docs/benchmarks.md', import.meta.url);

export function machineDescription(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const kernel = execSync('uname -r').toString().trim();
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${kernel}, Node ${process.version}`;
}

/**
 * The filesystem `path` is on, for a report: its type and device, and for ext4 whether it has
 * a journal (a journal-less ext4 looks past recently deleted inodes for every file it creates:
 * a kernel cost per chDB part that a journaled filesystem does not pay).
 */
export function filesystemOf(
  path: string,
  mountInfo = readFileSync('/proc/self/mountinfo', 'utf8'),
  journals = existsSync('/proc/fs/jbd2') ? readdirSync('/proc/fs/jbd2') : [],
): string {
  const covers = (mountPoint: string) =>
    mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
  const mount = parseMountInfo(mountInfo)
    .filter((m) => covers(m.mountPoint))
    .reduce<Mount | undefined>(
      (best, m) => (best === undefined || m.mountPoint.length >= best.mountPoint.length ? m : best),
      undefined,
    );
  if (mount === undefined) return 'an unknown filesystem';
  const where = `${mount.fsType} (${mount.source})`;
  if (mount.fsType !== 'ext4') return where;
  // jbd2 names each journal `<device>-<journal inode>`.
  const journaled = journals.some((j) => j.startsWith(`${basename(mount.source)}-`));
  return `${where} ${journaled ? 'with' : 'without'} a journal`;
}

/** Replaces (or appends) the section `## title` with `body`, stamped with machine and command. */
export function writeSection(title: string, command: string, body: string): void {
  const doc = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '# Benchmarks\n';
  const stamp = `_Run ${new Date().toISOString()} on ${machineDescription()}; command: \`${command}\`._`;
  const section = `## ${title}\n\n${stamp}\n\n${body.trim()}\n`;
  const pattern = new RegExp(`## ${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n[\\s\\S]*?(?=\\n## |$)`);
  const next = pattern.test(doc) ? doc.replace(pattern, section) : `${doc.trimEnd()}\n\n${section}`;
  writeFileSync(DOC, next);
}

/** A markdown table from rows of cells. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}
