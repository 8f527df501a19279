// The Kubernetes manifests' contract with the code (test/integration/k8s-manifests.test.ts
// applies them to a real API server): every setting they pass exists, the ConfigMap validates,
// probes hit the real endpoints, the collector holds exactly the capabilities the code
// needs (the privileges integration test proves each one), its RBAC is exactly the requests
// the Kubernetes provider sends, and secrets come from Secrets (mounted files or
// secretKeyRef), never from a ConfigMap or a literal.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { KUBERNETES_API_ACCESS } from '../../collector/src/containers/providers/kubernetes.js';
import { COLLECTOR_CAPABILITIES } from '../../collector/src/kernel/privileges.js';
import { describeSettings, envNameFor, SECRET_SETTINGS, validateConfig } from '../../common/config.js';
import { planCollectorMemory, resolveBudget, SHIPPED_LIMIT } from '../../common/memory-budget.js';

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

  it('gives the collector exactly the capabilities the code needs, and nothing else', () => {
    const c = containersOf(byKind('DaemonSet', 'ktrail-collector'))[0]!;
    const sc = c.securityContext;
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(Object.keys(COLLECTOR_CAPABILITIES).sort());
    // uid 0 because Kubernetes gives a non-root container no ambient capabilities; stated, not implied.
    expect(sc.runAsUser).toBe(0);
    expect(sc.runAsNonRoot).toBe(false);
    expect(sc.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(sc.appArmorProfile).toEqual({ type: 'RuntimeDefault' });
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

  it('mounts host paths read-only, none of them a socket that must exist', () => {
    const spec = byKind('DaemonSet', 'ktrail-collector')?.spec.template.spec;
    const c = containersOf(byKind('DaemonSet', 'ktrail-collector'))[0]!;
    const mounts = new Map<string, Doc>(c.volumeMounts.map((m: Doc) => [m.name, m]));
    for (const v of spec.volumes as Doc[]) {
      if (!v.hostPath) continue;
      // A Socket (or File) type fails the pod on nodes without it, e.g. containerd on CRI-O.
      expect(['Directory', 'DirectoryOrCreate']).toContain(v.hostPath.type);
      const m = mounts.get(v.name);
      expect(m).toBeDefined();
      // Only the sequence state (/run/ktrail) is written.
      if (v.hostPath.path !== '/run/ktrail') expect(m?.readOnly).toBe(true);
    }
    // The collector's default containerd socket lives in the mounted directory.
    const containerd = spec.volumes.find((v: Doc) => v.name === 'containerd');
    expect(containerd.hostPath).toEqual({ path: '/run/containerd', type: 'DirectoryOrCreate' });
    expect(mounts.get('containerd')?.mountPath).toBe(dirname(config.collector.containerdSocket));
  });

  it('never scales processors past the partition count', () => {
    const scaled = byKind('ScaledObject', 'ktrail-processor');
    expect(scaled?.spec.maxReplicaCount).toBeLessThanOrEqual(config.kafka.partitions);
  });

  it('grants the collector exactly the API requests its Kubernetes provider declares', () => {
    const rule = (group: string, resource: string, verb: string) => `${group}/${resource}:${verb}`;
    const declared = new Set(KUBERNETES_API_ACCESS.map((a) => rule(a.apiGroup, a.resource, a.verb)));
    const granted = new Set<string>();
    for (const r of byKind('ClusterRole', 'ktrail-collector')?.rules ?? [])
      for (const g of r.apiGroups)
        for (const res of r.resources) for (const v of r.verbs) granted.add(rule(g, res, v));
    expect([...granted].sort()).toEqual([...declared].sort());
    // What the provider really sends is checked against a real API server's audit log
    // (test/integration/k8s-provider.test.ts), and the role there with `kubectl auth can-i`.
  });

  it('memory limits are the budgets the code defaults to, and hold the collector on up to 32 CPUs', () => {
    const limitOf = (kind: string, name: string): number => {
      const limit = String(containersOf(byKind(kind, name))[0]?.resources?.limits?.memory);
      const m = /^(\d+)(Mi|Gi)$/.exec(limit);
      expect(m, `${name} limits.memory ${limit}`).not.toBeNull();
      return Number(m?.[1]) * (m?.[2] === 'Gi' ? 1024 ** 3 : 1024 ** 2);
    };
    expect(limitOf('DaemonSet', 'ktrail-collector')).toBe(SHIPPED_LIMIT.collector);
    expect(limitOf('Deployment', 'ktrail-processor')).toBe(SHIPPED_LIMIT.processor);
    const unset = { name: 'collector.memoryBudgetBytes', value: undefined };
    const budget = resolveBudget(unset, SHIPPED_LIMIT.collector, {
      limitBytes: undefined,
      file: undefined,
      version: undefined,
    });
    for (const cpuCount of [2, 8, 32])
      expect(
        planCollectorMemory({
          budget,
          source: 'ebpf',
          ringBufferBytes: config.collector.ringBufferBytes,
          cpuCount,
        }).bufferMaxBytes,
      ).toBeGreaterThan(64 * 1024 * 1024);
  });
});
