// Starts the real services the integration and e2e projects need, once per run, and hands
// their endpoints to the tests through provide/inject. A service that can't start is
// handed over as { missing: reason }, and the tests that need it fail with that reason
// (test/support/real.ts: endpointOrReason, itReal).
import type { TestProject } from 'vitest/node';
import { type DockerEndpoint, ensureDocker } from './docker.js';
import { ensureKafka, type KafkaEndpoint } from './kafka.js';

export type Missing = { missing: string };

declare module 'vitest' {
  export interface ProvidedContext {
    kafka: KafkaEndpoint | Missing;
    docker: DockerEndpoint | Missing;
  }
}

async function attempt<T>(what: string, start: () => Promise<T>): Promise<T | Missing> {
  try {
    return await start();
  } catch (err) {
    const reason = `${what} unavailable: ${(err as Error).message}`;
    console.warn(`[global-setup] ${reason}`);
    return { missing: reason };
  }
}

export default async function setup(project: TestProject): Promise<void> {
  project.provide('kafka', await attempt('kafka', ensureKafka));
  project.provide('docker', await attempt('docker', ensureDocker));
}
