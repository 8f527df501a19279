// deploy/k8s and the Helm chart (deploy/helm/ktrail) against a real kube-apiserver: every
// manifest passes server-side validation (strict: unknown fields refused) and applies, the
// KEDA objects are validated by KEDA's own CRDs (from its Go module's source, installed
// here), the RBAC is what `kubectl auth can-i` says, deploy/k8s is the chart's rendering,
// and the chart lints, renders its values and installs with helm.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { type ControlPlane, startControlPlane } from '../support/kube-apiserver.js';
import { endpointOrReason, itReal } from '../support/real.js';

const run = promisify(execFile);
const kube = endpointOrReason(inject('kube'));
const it = itReal(kube.missing);
const root = fileURLToPath(new URL('../..', import.meta.url));
const k8s = join(root, 'deploy/k8s');
const chart = join(root, 'deploy/helm/ktrail');
const sa = (ns: string, name: string) => `system:serviceaccount:${ns}:${name}`;
// biome-ignore lint/suspicious/noExplicitAny: free-form Kubernetes objects
type Doc = Record<string, any>;

let cp: ControlPlane;

beforeAll(async () => {
  if (!kube.value) return;
  cp = await startControlPlane(kube.value);
  await cp.kubectl(['apply', '--server-side', '-f', kube.value.crds]);
  await cp.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/scaledobjects.keda.sh',
    'crd/triggerauthentications.keda.sh',
  ]);
}, 180_000);

afterAll(async () => {
  await cp?.close();
});

const objects = (yaml: string): Doc[] =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);

describe('deploy/k8s and the Helm chart on a real kube-apiserver', () => {
  it('deploy/k8s is the chart rendered with its default values', async () => {
    const helm = join(kube.value!.bin, 'helm');
    await run(join(root, 'deploy/helm/render.sh'), ['--check'], {
      env: { ...process.env, KTRAIL_HELM: helm },
    }).catch((err: Error & { stderr?: string }) => {
      throw new Error(err.stderr || err.message);
    });
  });

  it('every manifest passes strict server-side validation, then applies', async () => {
    await cp.kubectl(['apply', '--validate=strict', '-f', join(k8s, 'namespace.yaml')]);
    const dry = await cp.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', k8s]);
    const applied = await cp.kubectl(['apply', '--validate=strict', '-f', k8s]);
    const expected = countDocs();
    expect(dry.trim().split('\n')).toHaveLength(expected);
    expect(applied.trim().split('\n')).toHaveLength(expected);
    for (const kind of [
      'daemonset/ktrail-collector',
      'deployment/ktrail-processor',
      'scaledobject/ktrail-processor',
      'triggerauthentication/ktrail-kafka',
      'poddisruptionbudget/ktrail-processor',
      'configmap/ktrail-config',
    ])
      expect(await cp.kubectl(['-n', 'ktrail', 'get', kind, '-o', 'name'])).toContain(kind.split('/')[1]);
    // The DaemonSet as the server stored it keeps the least privilege it was given.
    const ds = JSON.parse(
      await cp.kubectl(['-n', 'ktrail', 'get', 'daemonset/ktrail-collector', '-o', 'json']),
    ) as Doc;
    const c = ds.spec.template.spec.containers[0];
    expect(c.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN'] });
  });

  it("KEDA's CRD refuses a ScaledObject it does not know: the validation is real", async () => {
    const scaled = objects(readFileSync(join(k8s, 'processor-keda.yaml'), 'utf8')).find(
      (d) => d.kind === 'ScaledObject',
    )!;
    const bad: Doc = { ...scaled, metadata: { ...scaled.metadata, name: 'bad' } };
    const wrongType = await cp.kubectlRun(
      ['apply', '--dry-run=server', '--validate=strict', '-f', '-'],
      JSON.stringify({ ...bad, spec: { ...bad.spec, maxReplicaCount: 'lots' } }),
    );
    expect(wrongType.code).not.toBe(0);
    expect(wrongType.stderr).toMatch(/maxReplicaCount/);
    const unknown = await cp.kubectlRun(
      ['apply', '--dry-run=server', '--validate=strict', '-f', '-'],
      JSON.stringify({ ...bad, spec: { ...bad.spec, scaleTargetRefs: {} } }),
    );
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown field "spec.scaleTargetRefs"/);
  });

  it('RBAC: the collector may list and watch pods and get ReplicaSets and Jobs, nothing else; the processor nothing', async () => {
    const canI = async (who: string, verb: string, resource: string) =>
      (await cp.kubectlRun(['auth', 'can-i', verb, resource, '--as', who, '-A'])).stdout.trim();
    const collector = sa('ktrail', 'ktrail-collector');
    for (const [verb, resource] of [
      ['list', 'pods'],
      ['watch', 'pods'],
      ['get', 'replicasets.apps'],
      ['get', 'jobs.batch'],
    ])
      expect(await canI(collector, verb!, resource!), `${verb} ${resource}`).toBe('yes');
    for (const [verb, resource] of [
      ['get', 'pods'],
      ['list', 'secrets'],
      ['list', 'nodes'],
      ['watch', 'replicasets.apps'],
      ['list', 'jobs.batch'],
      ['get', 'cronjobs.batch'],
    ])
      expect(await canI(collector, verb!, resource!), `${verb} ${resource}`).toBe('no');
    for (const [verb, resource] of [
      ['list', 'pods'],
      ['get', 'configmaps'],
      ['get', 'secrets'],
    ])
      expect(
        await canI(sa('ktrail', 'ktrail-processor'), verb!, resource!),
        `processor ${verb} ${resource}`,
      ).toBe('no');
  });

  it('helm lint passes, and the values reach the objects (secrets only by reference)', async () => {
    expect(await cp.helm(['lint', '--strict', chart])).toMatch(/0 chart\(s\) failed/);
    const values = [
      '--set-json',
      'collector.nodeSelector={"kubernetes.io/os":"linux","ktrail/monitor":"yes"}',
      '--set-json',
      'collector.tolerations=[{"key":"gpu","operator":"Exists","effect":"NoSchedule"}]',
      '--set-json',
      'processor.resources={"requests":{"cpu":"2","memory":"1Gi"},"limits":{"memory":"2Gi"}}',
      '--set-json',
      'kafka.brokers=["k1.example:9093","k2.example:9093"]',
      '--set',
      'clickhouse.url=https://ch.example:8443,kafka.existingSecret=my-kafka,clickhouse.existingSecret=my-ch',
      '--set',
      'processor.keda.enabled=false,config.processor.batchMaxRows=50000',
    ];
    const docs = objects(await cp.helm(['template', 'kt', chart, '--namespace', 'kt', ...values]));
    const get = (kind: string) => docs.find((d) => d.kind === kind)!;
    const ds = get('DaemonSet').spec.template.spec;
    expect(ds.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'ktrail/monitor': 'yes' });
    expect(ds.tolerations).toEqual([{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(ds.volumes.find((v: Doc) => v.name === 'kafka-auth').secret.secretName).toBe('my-kafka');
    const proc = get('Deployment');
    expect(proc.spec.replicas).toBe(2);
    expect(proc.spec.template.spec.containers[0].resources.limits.memory).toBe('2Gi');
    expect(
      proc.spec.template.spec.volumes.find((v: Doc) => v.name === 'clickhouse-auth').secret.secretName,
    ).toBe('my-ch');
    expect(docs.filter((d) => d.kind === 'ScaledObject' || d.kind === 'TriggerAuthentication')).toEqual([]);
    const config = parse(get('ConfigMap').data['ktrail.yaml']) as Doc;
    expect(config.kafka.brokers).toEqual(['k1.example:9093', 'k2.example:9093']);
    expect(config.clickhouse.url).toBe('https://ch.example:8443');
    expect(config.clickhouse.passwordFile).toBe('/etc/ktrail/clickhouse/password');
    expect(config.processor.batchMaxRows).toBe(50000);
    // A secret value in `config` is refused, not rendered into the ConfigMap.
    await expect(
      cp.helm(['template', 'kt', chart, '--set', 'config.clickhouse.password=hunter2']),
    ).rejects.toThrow(/config.clickhouse.password: secrets come from existing Secrets/);
    // KEDA must not scale past the partitions.
    await expect(
      cp.helm(['template', 'kt', chart, '--set', 'processor.keda.maxReplicas=48']),
    ).rejects.toThrow(/must not exceed kafka.partitions/);
  });

  it('helm install: with KEDA (its ScaledObject validated by the CRD) and without', async () => {
    for (const [release, extra] of [
      ['kt-keda', []],
      ['kt-plain', ['--set', 'processor.keda.enabled=false,collector.kubernetes=false']],
    ] as const) {
      await cp.helm(['install', release, chart, '--namespace', release, '--create-namespace', ...extra]);
      const names = await cp.kubectl([
        '-n',
        release,
        'get',
        'daemonset,deployment,configmap,scaledobject',
        '-o',
        'name',
      ]);
      expect(names).toContain(`daemonset.apps/${release}-ktrail-collector`);
      expect(names).toContain(`deployment.apps/${release}-ktrail-processor`);
      expect(names.includes('scaledobject.keda.sh/')).toBe(release === 'kt-keda');
    }
    const who = sa('kt-keda', 'kt-keda-ktrail-collector');
    expect((await cp.kubectlRun(['auth', 'can-i', 'watch', 'pods', '--as', who, '-A'])).stdout.trim()).toBe(
      'yes',
    );
    // Without the Kubernetes provider, no API access at all.
    const plain = sa('kt-plain', 'kt-plain-ktrail-collector');
    expect((await cp.kubectlRun(['auth', 'can-i', 'list', 'pods', '--as', plain, '-A'])).stdout.trim()).toBe(
      'no',
    );
    expect(await cp.helm(['list', '-A', '-q'])).toMatch(/kt-keda\s+kt-plain|kt-plain\s+kt-keda/);
  });
});

/** Documents in deploy/k8s: kubectl apply prints a line for each. */
function countDocs(): number {
  return readdirSync(k8s)
    .filter((f) => f.endsWith('.yaml'))
    .reduce((n, f) => n + objects(readFileSync(join(k8s, f), 'utf8')).length, 0);
}
