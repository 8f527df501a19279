// A TypeScript entry run as the collector or the processor is run: with that process's Node
// flags and environment, which live in one place, the image's entrypoint (deploy/docker/
// entrypoint.sh `run-as`). ./ktrail up starts its children this way, and the processor
// benchmark its in-process processor, so what they measure is what ships.
import { dirname, join } from 'node:path';
import { REPO_ROOT } from './repo-root.js';

export type ProcessRole = 'collector' | 'processor';

export interface RunAs {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The command that runs `script` (path from the checkout's root, or absolute) as `role`. */
export function runAs(role: ProcessRole, script: string, args: string[] = [], env = process.env): RunAs {
  return {
    command: 'sh',
    args: [join(REPO_ROOT, 'deploy/docker/entrypoint.sh'), 'run-as', role, script, ...args],
    // The entrypoint runs `node` from PATH: this Node, whatever PATH says.
    env: { ...env, PATH: `${dirname(process.execPath)}:${env.PATH ?? ''}` },
  };
}
