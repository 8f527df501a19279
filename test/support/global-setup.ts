// Starts the real services the integration and e2e projects need, once per run, and hands
// their endpoints to the tests through provide/inject. A service that can't start is
// handed over as { missing: reason }, and the tests that need it fail with that reason
// (test/support/real.ts: endpointOrReason, itReal).
import type { TestProject } from 'vitest/node';
import { type DockerEndpoint, ensureDocker } from './docker.js';
import { dropTopicsCreatedSince, ensureKafka, type KafkaEndpoint } from './kafka.js';
import { ensureKubeTools, type KubeTools } from './kube-apiserver.js';
import { ensureRegistryInstalled, type RegistryInstall, stopTestRegistries } from './registry.js';

export type Missing = { missing: string };

declare module 'vitest' {
  export interface ProvidedContext {
    kafka: KafkaEndpoint | Missing;
    docker: DockerEndpoint | Missing;
    /** Installed only: tests start their own instances (test/support/registry.ts). */
    registry: RegistryInstall | Missing;
    /** Binaries of a Kubernetes control plane (test/support/kube-apiserver.ts starts one per file). */
    kube: KubeTools | Missing;
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const kafka = await attempt('kafka', ensureKafka);
  project.provide('kafka', kafka);
  project.provide('docker', await attempt('docker', ensureDocker));
  project.provide('kube', await attempt('kubernetes tools', ensureKubeTools));
  project.provide('registry', await attempt('schema registry', ensureRegistryInstalled));
  const dropTopics = 'missing' in kafka ? async () => {} : await dropTopicsCreatedSince(kafka);
  // When the run ends, pass or fail: the registries the tests started are stopped, and the
  // topics they created are deleted from the broker, whose data the checkout keeps.
  return async () => {
    await stopTestRegistries();
    await dropTopics();
  };
}
