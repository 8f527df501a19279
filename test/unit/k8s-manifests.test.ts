// The Kubernetes manifests can't be applied here (no API server), so their contract with
// the code is checked instead: every setting they pass exists, the ConfigMap validates,
// probes hit the real endpoints, and the collector stays unprivileged.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { describeSettings, validateConfig } from '../../common/config.js';

const dir = new URL('../../deploy/k8s/', import.meta.url).pathname;
// biome-ignore lint/suspicious/noExplicitAny: free-form Kubernetes objects
type Doc = Record<string, any>;
const docs: Doc[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as Doc));
const byKind = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
const containersOf = (workload: Doc | undefined): Doc[] => workload?.spec?.template?.spec?.containers ?? [];

describe('deploy/k8s manifests', () => {
  const known = new Set(describeSettings().map((s) => s.env));
  const config = validateConfig({
    ...parse(byKind('ConfigMap', 'ktrail-config')?.data['ktrail.yaml']),
    node: 'n',
  });

  it('the ConfigMap holds a valid ktrail config', () => {
    expect(config.kafka.partitions).toBeGreaterThan(1);
  });

  it('passes only settings that exist', () => {
    for (const workload of [
      byKind('DaemonSet', 'ktrail-collector'),
      byKind('Deployment', 'ktrail-processor'),
    ]) {
      expect(workload).toBeDefined();
      for (const c of containersOf(workload))
        for (const env of c.env ?? [])
          if (String(env.name).startsWith('KTRAIL_')) expect(known).toContain(env.name);
    }
  });

  it('probes point at the metrics server port and paths', () => {
    for (const workload of [
      byKind('DaemonSet', 'ktrail-collector'),
      byKind('Deployment', 'ktrail-processor'),
    ]) {
      const c = containersOf(workload)[0]!;
      expect(c.ports[0].containerPort).toBe(config.http.port);
      expect(c.livenessProbe.httpGet.path).toBe('/healthz');
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    }
  });

  it('keeps the collector unprivileged with only the capabilities eBPF needs', () => {
    const c = containersOf(byKind('DaemonSet', 'ktrail-collector'))[0]!;
    expect(c.securityContext.privileged).toBe(false);
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(c.securityContext.capabilities.add).not.toContain('SYS_ADMIN');
    expect(c.securityContext.capabilities.add).toEqual(expect.arrayContaining(['BPF', 'PERFMON']));
  });

  it('never scales processors past the partition count, and the RBAC is read-only', () => {
    const scaled = byKind('ScaledObject', 'ktrail-processor');
    expect(scaled?.spec.maxReplicaCount).toBeLessThanOrEqual(config.kafka.partitions);
    const role = byKind('ClusterRole', 'ktrail-collector');
    for (const rule of role?.rules ?? [])
      for (const verb of rule.verbs) expect(['get', 'list', 'watch']).toContain(verb);
  });
});
