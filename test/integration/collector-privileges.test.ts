// Least privilege, proven on this kernel. The test runs as root and drops privileges itself:
//
// 1. The real collector CLI (eBPF source, Kafka) as uid 65534 with exactly the capabilities
//    the DaemonSet adds (ambient, inheritable and bounding sets; no_new_privs, as
//    allowPrivilegeEscalation: false sets): every program attaches, an exec run here
//    reaches Kafka, CPU and network samples flow, and a container cgroup made here is named
//    by the startup scan and its memory sampled (no DAC_READ_SEARCH needed). Absent runtime
//    sockets turn their providers off with one log line each (a CRI-O node has no containerd).
// 2. The same without each of those capabilities in turn: it exits 1, naming that one.
// 3. Under containerd's default seccomp profile (what Kubernetes' RuntimeDefault is on
//    containerd) as uid 0 with only those capabilities, no_new_privs and a read-only root,
//    as the DaemonSet runs: bpf() is allowed and events flow.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { cgroupV2Root, missingKernelCapture, openCapture } from '../../collector/src/kernel/addon.js';
import { processPrivileges } from '../../collector/src/kernel/privileges.js';
import { bpfObjects } from '../../collector/src/sources.js';
import { topicNames } from '../../common/kafka.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch, KtrailEvent } from '../../schemas/types.js';
import { ensureContainerd } from '../support/docker.js';
import { deleteTopics } from '../support/kafka.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(repo, 'collector/src/cli.ts');
const kafka = endpointOrReason(inject('kafka'));
const NOBODY = 65534;

/** The capabilities the DaemonSet adds: the set under test is the manifest's own. */
function daemonSetCapabilities(): string[] {
  const text = readFileSync(join(repo, 'deploy/k8s/collector-daemonset.yaml'), 'utf8');
  const ds = parseAllDocuments(text)
    .map((d) => d.toJS())
    .find((d) => d?.kind === 'DaemonSet');
  return ds.spec.template.spec.containers[0].securityContext.capabilities.add;
}

function missingTool(tool: string, pkg: string): string | undefined {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  return r.error
    ? `${tool} not found (apt-get install ${pkg}; deploy/local/install.sh installs it)`
    : undefined;
}

function missingBpfObjects(): string | undefined {
  try {
    bpfObjects(join(repo, 'bpf/.output'));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const missing =
  missingRoot() ??
  missingTool('setpriv', 'util-linux') ??
  kafka.missing ??
  missingKernelCapture() ??
  missingBpfObjects();

const dir = mkdtempSync(join(tmpdir(), 'ktrail-privileges-'));
const stateDir = join(dir, 'state');
const topicPrefix = `caps-${Date.now().toString(36)}.`;
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (kafka.value) await deleteTopics(kafka.value, Object.values(topicNames(topicPrefix)));
});

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  /** pino's JSON lines on stdout with this msg. */
  logs: (msg: string) => Array<Record<string, unknown>>;
}

function track(child: ChildProcess): Run {
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

/** The collector CLI as uid 65534 holding exactly `caps` (setpriv keeps them across exec as ambient). */
function collectorAsNobody(caps: string[], node: string): Run {
  // The sequence state is the collector's one write; in Kubernetes a hostPath it owns.
  mkdirSync(stateDir, { recursive: true });
  chownSync(stateDir, NOBODY, NOBODY);
  const set = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const absent = join(dir, 'absent');
  const args = [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    `--inh-caps=${set}`,
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    '--no-new-privs',
    process.execPath,
    '--import',
    'tsx',
    cli,
    '--node',
    node,
    ...['--set', `kafka.brokers=${(kafka.value?.brokers ?? []).join(',')}`],
    ...['--set', `kafka.topicPrefix=${topicPrefix}`],
    ...['--set', 'kafka.partitions=1'],
    ...['--set', 'http.port=0'],
    ...['--set', 'collector.sampleIntervalMs=1000'],
    ...['--set', 'collector.batchMaxMs=100'],
    ...['--set', `collector.dockerSocket=${absent}/docker.sock`],
    ...['--set', `collector.containerdSocket=${absent}/containerd.sock`],
  ];
  return track(
    spawn('setpriv', args, {
      cwd: repo,
      env: { ...process.env, KTRAIL_STATE_DIR: stateDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/** Every program of the built objects, as a capture with every privilege opens them. */
function allPrograms(): string[] {
  const capture = openCapture(
    {
      objects: bpfObjects(join(repo, 'bpf/.output')),
      ringBufferBytes: 1 << 16,
      batchMaxBytes: 4096,
      batchMaxMs: 50,
    },
    () => {},
  );
  try {
    return capture
      .counters()
      .programs.map((p) => p.name)
      .sort();
  } finally {
    capture.close();
  }
}

/**
 * A container's cgroup as a runtime would make it (`docker-<id>.scope`), in the v2 hierarchy
 * and, on a hybrid host, in the v1 memory hierarchy where its memory.* files live: the
 * collector's startup scan, identity and memory sampling run on it without any privilege.
 */
function fakeContainerCgroup(): { id: string; cgroupId: bigint; remove: () => void } {
  const v2 = cgroupV2Root();
  if (v2 === undefined) throw new Error('no cgroup v2 hierarchy');
  const id = randomBytes(32).toString('hex');
  const rel = `ktrail-caps-${process.pid}/docker-${id}.scope`;
  const dirs = [join(v2, rel)];
  const v1Memory = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((m) => m[2] === 'cgroup' && (m[3] ?? '').split(',').includes('memory'))?.[1];
  if (v1Memory !== undefined) dirs.push(join(v1Memory, rel));
  else writeFileSync(join(v2, `ktrail-caps-${process.pid}`, 'cgroup.subtree_control'), '+memory');
  for (const d of dirs) mkdirSync(d, { recursive: true });
  return {
    id,
    cgroupId: statSync(dirs[0] as string, { bigint: true }).ino,
    remove: () => {
      for (const d of dirs)
        for (const x of [d, dirname(d)])
          try {
            rmdirSync(x);
          } catch {}
    },
  };
}

async function untilLogged(run: Run, msg: string, timeoutMs = 90_000): Promise<Record<string, unknown>> {
  let exited: number | null | undefined;
  void run.exit.then((code) => {
    exited = code;
  });
  return waitFor(
    `"${msg}" from the collector`,
    () => {
      if (exited !== undefined)
        throw new Error(`collector exited ${exited} before "${msg}": ${run.stderr().slice(-2000)}`);
      return run.logs(msg)[0];
    },
    timeoutMs,
    100,
  );
}

function exec(marker: string, times: number): void {
  for (let i = 0; i < times; i++) spawnSync('/bin/sh', ['-c', 'exit 3', marker]);
}

describe('collector privileges: exactly the DaemonSet capabilities', () => {
  const caps = daemonSetCapabilities();

  itReal(missing)(
    `as uid ${NOBODY} with only ${caps.join(', ')}: every program attaches and events reach Kafka`,
    async () => {
      const expected = allPrograms();
      expect(expected.length).toBeGreaterThan(10);
      const node = 'caps-node';
      const container = fakeContainerCgroup();
      const run = collectorAsNobody(caps, node);
      try {
        const opened = await untilLogged(run, 'kernel capture open');
        expect([...(opened.attached as string[])].sort()).toEqual(expected);
        expect(run.logs('program not running')).toEqual([]);
        // The posture is the one intended: uid 65534, exactly the set, no_new_privs.
        const status = readFileSync(`/proc/${run.child.pid}/status`, 'utf8');
        const privileges = processPrivileges(status);
        expect(privileges.uid).toBe(NOBODY);
        expect([...privileges.effective].sort()).toEqual([...caps].sort());
        expect(status).toMatch(/^NoNewPrivs:\s*1$/m);
        // Absent sockets: each provider off, said once.
        for (const runtime of ['docker', 'containerd'])
          expect(run.logs(`${runtime} socket not found: ${runtime} metadata provider off`)).toHaveLength(1);

        await untilLogged(run, 'topics ready; events and containers are co-partitioned');
        const marker = `ktrail-caps-${Date.now().toString(36)}`;
        exec(marker, 3);
        await new Promise((r) => setTimeout(r, 2_500)); // two sample intervals: CPU and network
      } finally {
        run.child.kill('SIGTERM');
        await run.exit;
        container.remove();
      }
      expect(await run.exit).toBe(0);
      const final = /collector stopped: captured (\d+), delivered (\d+), .* unaccounted (-?\d+)/.exec(
        run.stderr(),
      );
      expect(final?.[3]).toBe('0');

      const resolver = createSchemaResolver();
      const events: KtrailEvent[] = (
        await readTopic(kafka.value?.brokers ?? [], topicNames(topicPrefix).events)
      ).flatMap((m) => (resolver.decodeAs('EventBatch', m.value) as EventBatch).events);
      const execs = events.filter(
        (e): e is Extract<KtrailEvent, { kind: 'proc_exec' }> =>
          e.kind === 'proc_exec' && e.args.some((a) => a.startsWith('ktrail-caps-')),
      );
      expect(execs).toHaveLength(3);
      const pids = new Set(execs.map((e) => e.tgid));
      const exits = events.filter((e) => e.kind === 'proc_exit' && pids.has(e.tgid));
      expect(exits).toHaveLength(3);
      // tp_btf (CAP_PERFMON) and cgroup_skb (CAP_NET_ADMIN: the collector's own Kafka traffic).
      expect(events.some((e) => e.kind === 'cpu_sample' && e.cpuNs > 0n)).toBe(true);
      expect(events.some((e) => e.kind === 'net_sample')).toBe(true);
      // The startup scan named the container from cgroupfs, and its memory.* files were read.
      expect(events.some((e) => e.kind === 'memory_sample' && e.cgroupId === container.cgroupId)).toBe(true);
      const records = (await readTopic(kafka.value?.brokers ?? [], topicNames(topicPrefix).containers)).map(
        (m) =>
          resolver.decodeAs('ContainerRecord', m.value) as {
            containerId: string;
            cgroupId: bigint;
            runtime: string;
          },
      );
      expect(records.find((r) => r.containerId === container.id)).toMatchObject({
        cgroupId: container.cgroupId,
        runtime: 'docker',
      });
    },
    180_000,
  );

  for (const cap of caps) {
    itReal(missing)(
      `without CAP_${cap} it exits 1 and names CAP_${cap}`,
      async () => {
        const run = collectorAsNobody(
          caps.filter((c) => c !== cap),
          `caps-no-${cap.toLowerCase()}`,
        );
        const code = await Promise.race([
          run.exit,
          new Promise<'running'>((r) => setTimeout(() => r('running'), 90_000)),
        ]);
        if (code === 'running') run.child.kill('SIGKILL');
        expect(code).toBe(1);
        // Exactly this one is named as missing, with the step that needed it.
        expect(run.stderr()).toMatch(
          new RegExp(`^collector: kernel capture needs CAP_${cap} \\(uid ${NOBODY} holds`),
        );
        expect(run.stderr()).toMatch(new RegExp(`needs CAP_${cap}: (creating|loading|attaching) `));
      },
      120_000,
    );
  }
});

// containerd's own defaults for a container (oci.populateDefaultUnixSpec); dropped one by
// one, since ctr has no "drop ALL". The posture check below fails if the list falls behind.
const CONTAINERD_DEFAULT_CAPS = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

/** Host directories the container sees at the same paths, read-only: node, its libraries, the repo. */
function hostMounts(): Array<[string, string]> {
  const sources = [
    '/usr',
    realpathSync(repo),
    realpathSync(join(repo, 'node_modules')),
    dirname(realpathSync(process.execPath)),
  ];
  const mounts: Array<[string, string]> = [];
  for (const src of sources)
    if (!mounts.some(([s]) => src === s || src.startsWith(`${s}/`))) mounts.push([src, src]);
  // Merged /usr (Debian 12): /lib and /lib64 are links into it; the loader is found through them.
  for (const link of ['/lib', '/lib64']) {
    try {
      mounts.push([realpathSync(link), link]);
    } catch {}
  }
  return mounts;
}

/** `ctr run` of a throwaway container: the DaemonSet's posture, host tools mounted read-only. */
function containerRun(
  socketPath: string,
  caps: string[],
  name: string,
  command: string[],
  seccompProfile?: string,
): { args: string[]; kill: (signal: string) => void; remove: () => void } {
  const id = `ktrail-caps-${name}-${Date.now().toString(36)}`;
  const ctr = (args: string[]) => ['--address', socketPath, '-n', 'ktrail-caps', ...args];
  const rootfs = mkdtempSync(join(dir, 'rootfs-'));
  return {
    // `ctr run --seccomp` applies contrib/seccomp's default profile: the code containerd's CRI
    // plugin runs for a pod's seccompProfile RuntimeDefault.
    args: ctr([
      'run',
      '--rm',
      '--rootfs',
      '--read-only',
      '--seccomp',
      ...(seccompProfile === undefined ? [] : ['--seccomp-profile', seccompProfile]),
      ...CONTAINERD_DEFAULT_CAPS.flatMap((c) => ['--cap-drop', `CAP_${c}`]),
      ...caps.flatMap((c) => ['--cap-add', `CAP_${c}`]),
      ...hostMounts().flatMap(([src, dst]) => [
        '--mount',
        `type=bind,src=${src},dst=${dst},options=rbind:ro`,
      ]),
      // As the DaemonSet mounts it: the host's whole cgroupfs, whatever its layout.
      ...['--mount', 'type=bind,src=/sys/fs/cgroup,dst=/host/sys/fs/cgroup,options=rbind:ro'],
      ...['--mount', 'type=tmpfs,src=tmpfs,dst=/tmp,options=rw'],
      ...['--env', 'HOME=/tmp', '--env', 'KTRAIL_COLLECTOR_CGROUP_ROOT=/host/sys/fs/cgroup', '--cwd', repo],
      rootfs,
      id,
      ...command,
    ]),
    kill: (signal) =>
      void spawnSync('ctr', ctr(['task', 'kill', '--signal', signal, id]), { stdio: 'ignore' }),
    remove: () => void spawnSync('ctr', ctr(['container', 'rm', id]), { stdio: 'ignore' }),
  };
}

const DRY_RUN = [process.execPath, '--import', 'tsx', cli, '--dry-run'];

describe('collector privileges: the runtime default seccomp profile', () => {
  const caps = daemonSetCapabilities();
  const ctrMissing =
    missing ?? missingTool('ctr', 'containerd') ?? (cgroupV2Root() ? undefined : 'no cgroup v2 mount');

  itReal(ctrMissing)(
    `under containerd's default seccomp profile, as uid 0 with only ${caps.join(', ')}: bpf() works and events flow`,
    async () => {
      const { socketPath } = await ensureContainerd();
      // The posture: seccomp filter on, no_new_privs, uid 0, exactly the set.
      const status = containerRun(socketPath, caps, 'status', [
        process.execPath,
        '-e',
        "process.stdout.write(require('fs').readFileSync('/proc/self/status','utf8'))",
      ]);
      const posture = spawnSync('ctr', status.args, { encoding: 'utf8', timeout: 60_000 });
      status.remove();
      expect(posture.status, posture.stderr).toBe(0);
      expect(posture.stdout).toMatch(/^Seccomp:\s*2$/m);
      expect(posture.stdout).toMatch(/^NoNewPrivs:\s*1$/m);
      const privileges = processPrivileges(posture.stdout);
      expect(privileges.uid).toBe(0);
      expect([...privileges.effective].sort()).toEqual([...caps].sort());

      // The collector, printing decoded events (--dry-run: this is about the kernel side).
      const container = containerRun(socketPath, caps, 'collector', DRY_RUN);
      const run = track(spawn('ctr', container.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
      const marker = `ktrail-seccomp-${Date.now().toString(36)}`;
      try {
        await waitFor(
          'the exec marker in the collector output',
          () => {
            if (run.stderr().includes('collector:'))
              throw new Error(`collector failed: ${run.stderr().slice(-2000)}`);
            exec(marker, 1);
            return run.stdout().includes(marker) ? true : undefined;
          },
          90_000,
          500,
        );
      } finally {
        container.kill('SIGTERM');
        const code = await Promise.race([
          run.exit,
          new Promise((r) => setTimeout(() => r('running'), 20_000)),
        ]);
        if (code === 'running') container.kill('SIGKILL');
        container.remove();
      }
      expect(await run.exit).toBe(0);
      expect(run.stderr()).toMatch(/dry run: \d+ events/);
      // Every program ran (a dry run still logs warnings, such as a program not running).
      expect(run.stdout()).not.toContain('program not running');
      const seen = run
        .stdout()
        .split('\n')
        .filter((l) => l.includes(marker))
        .map((l) => JSON.parse(l) as { kind: string; filename: string });
      expect(seen[0]).toMatchObject({ kind: 'proc_exec', filename: '/bin/sh' });
    },
    240_000,
  );

  itReal(ctrMissing)(
    'under a profile that refuses bpf() (older runtimes without CAP_SYS_ADMIN), it says so',
    async () => {
      const { socketPath } = await ensureContainerd();
      const profile = join(dir, 'no-bpf.json');
      writeFileSync(
        profile,
        JSON.stringify({
          defaultAction: 'SCMP_ACT_ALLOW',
          syscalls: [{ names: ['bpf'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
        }),
      );
      const container = containerRun(socketPath, caps, 'nobpf', DRY_RUN, profile);
      const result = spawnSync('ctr', container.args, { encoding: 'utf8', timeout: 90_000 });
      container.remove();
      expect(result.status).toBe(1);
      // Every capability is held, so none is named: the refusal is the profile's.
      expect(result.stderr).toMatch(
        /^collector: kernel capture refused with EPERM, not for a missing capability/m,
      );
      expect(result.stderr).toContain('although CAP_BPF is held: a seccomp profile or an LSM refuses it');
    },
    120_000,
  );
});
