// A real Kubernetes control plane for tests: kine (sqlite) + kube-apiserver (RBAC, client
// certificates from a CA made here, service-account tokens, an audit log) + a
// kube-controller-manager running only the controllers a kubelet-less cluster needs. The
// binaries come from deploy/local/kube.sh (built from the Go module proxy into .cache/kube).
// Everything listens on 127.0.0.1 on free ports. Each process's pid is written where
// `kube.sh stop` (and so `./ktrail stop`) finds it, and close() stops them all.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { freePorts } from './ports.js';
import { type CertFiles, issueCert, makeCa } from './tls.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../deploy/local/kube.sh', import.meta.url));
const HOST = '127.0.0.1';

export type KubeTools = { bin: string; crds: string; cacheDir: string };
export type KubectlResult = { code: number; stdout: string; stderr: string };

/** Builds the tools when missing (`kube.sh install`: cold ~15 min of CPU, else seconds). */
export async function ensureKubeTools(): Promise<KubeTools> {
  try {
    await run(script, ['install'], { timeout: 60 * 60_000, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    const detail = `${e.stdout ?? ''}\n${e.stderr ?? ''}`.trim() || e.message;
    throw new Error(`deploy/local/kube.sh install failed: ${detail.split('\n').slice(-8).join(' | ')}`);
  }
  const bin = (await run(script, ['bin'])).stdout.trim();
  const crds = (await run(script, ['crds'])).stdout.trim();
  return { bin, crds, cacheDir: join(bin, '..') };
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  url: string;
  port: number;
  dir: string;
  caFile: string;
  /** An admin (system:masters) kubeconfig file. */
  kubeconfig: string;
  auditLog: string;
  tools: KubeTools;
  /** kubectl as the admin; rejects unless it exits 0. */
  kubectl(args: string[], input?: string): Promise<string>;
  /** kubectl as the admin, whatever its exit code (`auth can-i` exits 1 for "no"). */
  kubectlRun(args: string[], input?: string): Promise<KubectlResult>;
  helm(args: string[]): Promise<string>;
  /** @kubernetes/client-node config of the admin. */
  admin(): KubeConfig;
  /** Creates a namespace and waits for its default ServiceAccount (pods need it). */
  namespace(name: string): Promise<void>;
  /** A client config the way a pod gets one: token and CA files, KUBERNETES_SERVICE_HOST/PORT. */
  inCluster(namespace: string, serviceAccount: string): Promise<KubeConfig>;
  /** SIGTERM, SIGKILL after 3 s; kine and the controller manager stay. */
  stopApiServer(): Promise<void>;
  /** Starts it again on the same port; resolves when /readyz says so. */
  startApiServer(): Promise<void>;
  close(): Promise<void>;
}

export interface ControlPlaneOptions {
  apiServerArgs?: string[];
  kineArgs?: string[];
}

// Every request of a ktrail service account, as the API server saw it.
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:ktrail"]
  - level: None
`;

function kubeconfigYaml(url: string, ca: string, cert: string, key: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters: [{ name: test, cluster: { server: "' + url + '", certificate-authority: "' + ca + '" } }]',
    'users: [{ name: u, user: { client-certificate: "' + cert + '", client-key: "' + key + '" } }]',
    'contexts: [{ name: test, context: { cluster: test, user: u } }]',
    'current-context: test',
    '',
  ].join('\n');
}

/** A started process whose pid is recorded for `kube.sh stop`. */
function startProcess(
  name: string,
  bin: string,
  args: string[],
  logFile: string,
  runDir: string,
  match: string,
): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', log, log] });
  closeSync(log);
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  writeFileSync(join(runDir, `${name}.pid`), String(child.pid));
  writeFileSync(join(runDir, `${name}.match`), match);
  return child;
}

/**
 * SIGTERM, then SIGKILL after `graceMs`. kube-apiserver's graceful shutdown outlasts 15 s here
 * (it drains what its clients hold open), so it gets 3 s and then stops as after a crash.
 */
async function stopProcess(
  child: ChildProcess | undefined,
  name: string,
  runDir: string,
  graceMs = 15_000,
): Promise<void> {
  rmSync(join(runDir, `${name}.pid`), { force: true });
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-6).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** GET <url><path> as the admin; resolves with the status code (0: no answer). */
function adminGet(
  url: string,
  path: string,
  files: { ca: string; cert: string; key: string },
): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      `${url}${path}`,
      {
        ca: readFileSync(files.ca),
        cert: readFileSync(files.cert),
        key: readFileSync(files.key),
        timeout: 2_000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

type Pki = {
  ca: CertFiles;
  server: CertFiles;
  admin: CertFiles;
  kcm: CertFiles;
  saKey: string;
  saPub: string;
  kubeconfig: string;
  kcmConfig: string;
  auditPolicy: string;
  auditLog: string;
};

/** A CA, the server's and two clients' certificates, the service-account key, kubeconfigs. */
async function makePki(dir: string, url: string): Promise<Pki> {
  const certs = join(dir, 'pki');
  const ca = await makeCa(certs, 'ca');
  const server = await issueCert(ca, certs, 'apiserver', {
    san: 'IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc',
  });
  const admin = await issueCert(ca, certs, 'admin', {
    client: true,
    subject: '/O=system:masters/CN=ktrail-test-admin',
  });
  const kcm = await issueCert(ca, certs, 'kcm', {
    client: true,
    subject: '/CN=system:kube-controller-manager',
  });
  const saKey = join(certs, 'sa.key');
  const saPub = join(certs, 'sa.pub');
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', saKey]);
  await run('openssl', ['pkey', '-in', saKey, '-pubout', '-out', saPub]);
  const kubeconfig = join(dir, 'admin.kubeconfig');
  writeFileSync(kubeconfig, kubeconfigYaml(url, ca.cert, admin.cert, admin.key));
  const kcmConfig = join(dir, 'kcm.kubeconfig');
  writeFileSync(kcmConfig, kubeconfigYaml(url, ca.cert, kcm.cert, kcm.key));
  const auditPolicy = join(dir, 'audit-policy.yaml');
  writeFileSync(auditPolicy, AUDIT_POLICY);
  return {
    ca,
    server,
    admin,
    kcm,
    saKey,
    saPub,
    kubeconfig,
    kcmConfig,
    auditPolicy,
    auditLog: join(dir, 'audit.log'),
  };
}

/** The three command lines, loopback only. */
function commandLines(
  pki: Pki,
  ports: { kinePort: number; port: number; kcmPort: number },
  dir: string,
  options: ControlPlaneOptions,
): { kine: string[]; apiServer: string[]; kcm: string[] } {
  return {
    kine: [
      `--listen-address=${HOST}:${ports.kinePort}`,
      `--endpoint=sqlite://${join(dir, 'kine.db')}?_journal=WAL&cache=shared&_busy_timeout=30000`,
      '--metrics-bind-address=0',
      ...(options.kineArgs ?? []),
    ],
    apiServer: [
      `--etcd-servers=http://${HOST}:${ports.kinePort}`,
      `--bind-address=${HOST}`,
      `--advertise-address=${HOST}`,
      `--secure-port=${ports.port}`,
      '--authorization-mode=RBAC',
      '--allow-privileged=true',
      `--client-ca-file=${pki.ca.cert}`,
      `--tls-cert-file=${pki.server.cert}`,
      `--tls-private-key-file=${pki.server.key}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      `--audit-policy-file=${pki.auditPolicy}`,
      `--audit-log-path=${pki.auditLog}`,
      ...(options.apiServerArgs ?? []),
    ],
    kcm: [
      `--kubeconfig=${pki.kcmConfig}`,
      `--authentication-kubeconfig=${pki.kcmConfig}`,
      `--authorization-kubeconfig=${pki.kcmConfig}`,
      `--bind-address=${HOST}`,
      `--secure-port=${ports.kcmPort}`,
      '--controllers=serviceaccount-controller,namespace-controller,garbage-collector-controller',
      '--leader-elect=false',
      '--use-service-account-credentials=false',
    ],
  };
}

function kubectlRunner(bin: string, env: NodeJS.ProcessEnv) {
  const kubectlRun = (args: string[], input?: string): Promise<KubectlResult> => {
    const child = execFile(bin, args, { env, timeout: 120_000, maxBuffer: 64 << 20 });
    child.stdin?.end(input);
    return new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d) => {
        stdout += d;
      });
      child.stderr?.on('data', (d) => {
        stderr += d;
      });
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  };
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const r = await kubectlRun(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  };
  return { kubectl, kubectlRun };
}

/** A service account's config the way a pod gets it: token and CA files, KUBERNETES_SERVICE_HOST/PORT. */
async function inClusterConfig(
  kubectl: (args: string[]) => Promise<string>,
  dir: string,
  caFile: string,
  port: number,
  namespace: string,
  serviceAccount: string,
): Promise<KubeConfig> {
  const token = (await kubectl(['-n', namespace, 'create', 'token', serviceAccount, '--duration=1h'])).trim();
  const root = join(dir, `pod-${namespace}-${serviceAccount}`);
  const sa = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'token'), token);
  writeFileSync(join(sa, 'ca.crt'), readFileSync(caFile));
  writeFileSync(join(sa, 'namespace'), namespace);
  const saved = [process.env.KUBERNETES_SERVICE_HOST, process.env.KUBERNETES_SERVICE_PORT];
  process.env.KUBERNETES_SERVICE_HOST = HOST;
  process.env.KUBERNETES_SERVICE_PORT = String(port);
  try {
    const kc = new KubeConfig();
    kc.loadFromCluster(root);
    return kc;
  } finally {
    if (saved[0] === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    else process.env.KUBERNETES_SERVICE_HOST = saved[0];
    if (saved[1] === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
    else process.env.KUBERNETES_SERVICE_PORT = saved[1];
  }
}

/** Starts kine, the API server and the controller manager; ready when /readyz says so. */
export async function startControlPlane(
  tools: KubeTools,
  options: ControlPlaneOptions = {},
): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'ktrail-kube-'));
  const runDir = join(tools.cacheDir, 'run', dir.split('/').at(-1)!);
  mkdirSync(runDir, { recursive: true });
  const [kinePort, port, kcmPort] = (await freePorts(3)) as [number, number, number];
  const url = `https://${HOST}:${port}`;
  const pki = await makePki(dir, url);
  const { ca, kubeconfig, auditLog } = pki;
  const bin = (b: string) => join(tools.bin, b);
  const env = { ...process.env, KUBECACHEDIR: join(tools.cacheDir, 'kubectl-cache'), KUBECONFIG: kubeconfig };

  let kine: ChildProcess | undefined;
  let apiServer: ChildProcess | undefined;
  let kcm: ChildProcess | undefined;

  const args = commandLines(pki, { kinePort, port, kcmPort }, dir, options);
  const startKine = () => {
    kine = startProcess('kine', bin('kine'), args.kine, join(dir, 'kine.log'), runDir, dir);
  };
  const files = { ca: ca.cert, cert: pki.admin.cert, key: pki.admin.key };
  const startApiServer = async () => {
    const logFile = join(dir, 'kube-apiserver.log');
    apiServer = startProcess('kube-apiserver', bin('kube-apiserver'), args.apiServer, logFile, runDir, dir);
    const child = apiServer;
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        if (child.exitCode !== null) throw new Error(`kube-apiserver exited: ${tail(logFile)}`);
        return (await adminGet(url, '/readyz', files)) === 200 ? true : undefined;
      },
      90_000,
      200,
    );
  };
  const startKcm = () => {
    const logFile = join(dir, 'kube-controller-manager.log');
    kcm = startProcess(
      'kube-controller-manager',
      bin('kube-controller-manager'),
      args.kcm,
      logFile,
      runDir,
      dir,
    );
  };

  const { kubectl, kubectlRun } = kubectlRunner(bin('kubectl'), env);

  const close = async () => {
    await stopProcess(kcm, 'kube-controller-manager', runDir);
    await stopProcess(apiServer, 'kube-apiserver', runDir, 3_000);
    await stopProcess(kine, 'kine', runDir);
    for (const f of ['kine', 'kube-apiserver', 'kube-controller-manager'])
      rmSync(join(runDir, `${f}.match`), { force: true });
    rmSync(runDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    startKine();
    await startApiServer();
    startKcm();
  } catch (err) {
    await close();
    throw err;
  }

  return {
    url,
    port,
    dir,
    caFile: ca.cert,
    kubeconfig,
    auditLog,
    tools,
    kubectl,
    kubectlRun,
    async helm(args) {
      const { stdout } = await run(bin('helm'), args, {
        env: {
          ...env,
          HELM_CACHE_HOME: join(dir, 'helm/cache'),
          HELM_CONFIG_HOME: join(dir, 'helm/config'),
          HELM_DATA_HOME: join(dir, 'helm/data'),
        },
        timeout: 120_000,
        maxBuffer: 64 << 20,
      }).catch((err: Error & { stderr?: string }) => {
        throw new Error(`helm ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
      });
      return stdout;
    },
    admin() {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig);
      return kc;
    },
    async namespace(name) {
      await kubectl(['create', 'namespace', name]);
      await waitFor(
        `ServiceAccount ${name}/default`,
        async () =>
          (await kubectl(['-n', name, 'get', 'serviceaccount', '-o', 'name'])).includes('default')
            ? true
            : undefined,
        30_000,
        200,
      );
    },
    inCluster: (namespace, serviceAccount) =>
      inClusterConfig(kubectl, dir, ca.cert, port, namespace, serviceAccount),
    stopApiServer: () => stopProcess(apiServer, 'kube-apiserver', runDir, 3_000),
    startApiServer,
    close,
  };
}
