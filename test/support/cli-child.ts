// The collector or processor CLI as a child process for e2e tests: its output kept (the last
// 400 chunks) for the failure message, and a stop that sends SIGTERM, then SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { REPO_ROOT } from '../../common/repo-root.js';

export function launchCli(
  name: 'collector' | 'processor',
  env: Record<string, string>,
  log: string[],
  args: string[] = [],
): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', `${REPO_ROOT}/${name}/src/cli.ts`, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer) => {
    log.push(chunk.toString());
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return child;
}

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves to the exit code. */
export async function stopCli(child: ChildProcess | undefined, killAfterMs = 40_000): Promise<number | null> {
  if (!child || child.exitCode !== null) return child?.exitCode ?? null;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}
