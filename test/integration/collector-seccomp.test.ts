// The collector under the runtime's default seccomp profile, as the DaemonSet runs it
// (seccompProfile: RuntimeDefault): containerd's profile (`ctr run --seccomp`, the code
// containerd's CRI plugin runs for RuntimeDefault), uid 0 with only the DaemonSet's
// capabilities, no_new_privs, a read-only root and the host's cgroupfs mounted as the
// DaemonSet mounts it: bpf() is allowed and events flow. Under a profile that refuses bpf()
// (what older runtimes do without CAP_SYS_ADMIN) it stops and says so.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { cgroupV2Root, missingKernelCapture } from '../../collector/src/kernel/addon.js';
import { processPrivileges } from '../../collector/src/kernel/privileges.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { ensureContainerd } from '../support/docker.js';
import { daemonSetCapabilities, exec, missingTool, track } from '../support/privileges.js';
import { itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const repo = REPO_ROOT;
const cli = join(repo, 'collector/src/cli.ts');
const CTR_NAMESPACE = 'ktrail-caps';
const dir = mkdtempSync(join(tmpdir(), 'ktrail-seccomp-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  // containerd puts the test's containers under /<namespace>/<id> in every hierarchy.
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (mountPoint && (fsType === 'cgroup' || fsType === 'cgroup2'))
      try {
        rmdirSync(join(mountPoint, CTR_NAMESPACE));
      } catch {}
  }
});

const missing =
  missingRoot() ??
  missingTool('ctr', 'containerd') ??
  missingKernelCapture() ??
  (cgroupV2Root() ? undefined : 'no cgroup v2 mount');

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
  const ctr = (args: string[]) => ['--address', socketPath, '-n', CTR_NAMESPACE, ...args];
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
      // A writable /tmp first: the host paths below may live under /tmp (a checkout there),
      // and a tmpfs mounted after them would hide them.
      ...['--mount', 'type=tmpfs,src=tmpfs,dst=/tmp,options=rw'],
      ...hostMounts().flatMap(([src, dst]) => [
        '--mount',
        `type=bind,src=${src},dst=${dst},options=rbind:ro`,
      ]),
      // As the DaemonSet mounts it: the host's whole cgroupfs, whatever its layout.
      ...['--mount', 'type=bind,src=/sys/fs/cgroup,dst=/host/sys/fs/cgroup,options=rbind:ro'],
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

describe('collector under the runtime default seccomp profile', () => {
  const caps = daemonSetCapabilities();

  itReal(missing)(
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

  itReal(missing)(
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
