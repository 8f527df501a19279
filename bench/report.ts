// docs/benchmarks.md is written by the benchmarks themselves: each replaces its own
// `## <title>` section, so numbers in the doc always come from a run, never by hand.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

const DOC = new URL('../docs/benchmarks.md', import.meta.url);

export function machineDescription(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const kernel = execSync('uname -r').toString().trim();
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${kernel}, Node ${process.version}`;
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
