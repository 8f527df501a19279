// The Kubernetes manifests can't be applied here (no API server), so their contract with
// the code is checked instead: every setting they pass exists, the ConfigMap validates,
// probes hit the real endpoints, the collector stays unprivileged, and secrets come from
// Secrets (mounted files or secretKeyRef), never from a ConfigMap or a literal.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { describeSettings, envNameFor, SECRET_SETTINGS, validateConfig } from '../../common/config.js';

const dir = new URL('../../deploy/k8s/', import.meta.url).pathname;
// biome-ignore lint/suspicious/noExplicitAny: free-form Kubernetes objects
type Doc = Record<string, any>;
const docs: Doc[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as Doc));
const byKind = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
const containersOf = (workload: Doc | undefined): Doc[] => workload?.spec?.template?.spec?.containers ?? [];
const get = (o: unknown, path: string): unknown =>
  path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);

/** Every [path, value] leaf of a parsed YAML/JSON value. */
function leaves(value: unknown, path = ''): Array<[string, unknown]> {
  if (value === null || typeof value !== 'object') return [[path, value]];
  return Object.entries(value).flatMap(([k, v]) => leaves(v, path ? `${path}.${k}` : k));
}

/** Mount paths of the Secret volumes of a workload's first container. */
function secretMounts(workload: Doc | undefined): string[] {
  const secretVolumes = new Set(
    (workload?.spec?.template?.spec?.volumes ?? []).filter((v: Doc) => v.secret).map((v: Doc) => v.name),
  );
  return (containersOf(workload)[0]?.volumeMounts ?? [])
    .filter((m: Doc) => secretVolumes.has(m.name))
    .map((m: Doc) => `${String(m.mountPath).replace(/\/$/, '')}/`);
}

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

  it('holds no secret value in any ConfigMap', () => {
    const configMaps = docs.filter((d) => d.kind === 'ConfigMap');
    expect(configMaps.length).toBeGreaterThan(0);
    for (const cm of configMaps)
      for (const [key, text] of Object.entries(cm.data ?? {})) {
        expect(String(text), `${cm.metadata.name}/${key}`).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
        const settings = parse(String(text)) as unknown;
        for (const secret of SECRET_SETTINGS)
          expect(get(settings, secret), `${key}: ${secret}`).toBeUndefined();
        for (const [path] of leaves(settings))
          if (/pass(word)?|secret|token|credential/i.test(path.split('.').at(-1) ?? ''))
            expect(path, `${key}: ${path} = a value, not a file`).toMatch(/File$/);
      }
  });

  it('gives every secret file the config names a Secret volume mount, and no secret as a literal', () => {
    const files = {
      collector: ['kafka.sasl.passwordFile', 'kafka.tls.caFile', 'kafka.tls.keyFile'],
      processor: [
        'kafka.sasl.passwordFile',
        'kafka.tls.caFile',
        'kafka.tls.keyFile',
        'clickhouse.passwordFile',
      ],
    };
    const workloads = {
      collector: byKind('DaemonSet', 'ktrail-collector'),
      processor: byKind('Deployment', 'ktrail-processor'),
    };
    const secretEnv = new Set(SECRET_SETTINGS.map((s) => envNameFor(s)));
    let checked = 0;
    for (const [name, workload] of Object.entries(workloads)) {
      const mounts = secretMounts(workload);
      for (const setting of files[name as keyof typeof files]) {
        const path = get(config, setting);
        if (typeof path !== 'string') continue;
        checked++;
        expect(
          mounts.some((m) => path.startsWith(m)),
          `${name}: ${setting} ${path} under a Secret mount`,
        ).toBe(true);
      }
      for (const c of containersOf(workload))
        for (const env of c.env ?? [])
          if (secretEnv.has(env.name)) {
            expect(env.value, `${name}: ${env.name} as a literal`).toBeUndefined();
            expect(env.valueFrom?.secretKeyRef, `${name}: ${env.name} from a Secret`).toBeDefined();
          }
    }
    expect(checked).toBeGreaterThanOrEqual(5); // the example config does use secrets
  });

  it('never scales processors past the partition count, and the RBAC is read-only', () => {
    const scaled = byKind('ScaledObject', 'ktrail-processor');
    expect(scaled?.spec.maxReplicaCount).toBeLessThanOrEqual(config.kafka.partitions);
    const role = byKind('ClusterRole', 'ktrail-collector');
    for (const rule of role?.rules ?? [])
      for (const verb of rule.verbs) expect(['get', 'list', 'watch']).toContain(verb);
  });
});
