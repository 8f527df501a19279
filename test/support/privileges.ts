// Shared by the privileges and seccomp integration tests: the DaemonSet's capability set as
// the manifest states it, a child process whose output is kept, and the exec the tests watch.
import { type ChildProcess, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../common/repo-root.js';

/** The capabilities the DaemonSet adds: the set under test is the manifest's own. */
export function daemonSetCapabilities(): string[] {
  const text = readFileSync(join(REPO_ROOT, 'deploy/k8s/collector-daemonset.yaml'), 'utf8');
  const ds = parseAllDocuments(text)
    .map((d) => d.toJS())
    .find((d) => d?.kind === 'DaemonSet');
  return ds.spec.template.spec.containers[0].securityContext.capabilities.add;
}

export function missingTool(tool: string, pkg: string): string | undefined {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  return r.error
    ? `${tool} not found (apt-get install ${pkg}; deploy/local/install.sh installs it)`
    : undefined;
}

export interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  /** pino's JSON lines on stdout with this msg. */
  logs: (msg: string) => Array<Record<string, unknown>>;
}

export function track(child: ChildProcess): Run {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs = (msg: string) =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes(msg))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);
  return { child, stdout: () => out, stderr: () => err, exit, logs };
}

/** Runs /bin/sh -c 'exit 3' <marker> `times` times: a proc_exec and a proc_exit to look for. */
export function exec(marker: string, times: number): void {
  for (let i = 0; i < times; i++) spawnSync('/bin/sh', ['-c', 'exit 3', marker]);
}
