// Least privilege, proven on this kernel. The test runs as root and drops privileges itself:
//
// 1. The real collector CLI (eBPF source, Kafka) as uid 65534 with exactly the capabilities
//    the DaemonSet adds (ambient, inheritable and bounding sets; no_new_privs, as
//    allowPrivilegeEscalation: false sets): every program attaches, an exec run here
//    reaches Kafka, CPU and network samples flow, and a container cgroup made here is named
//    by the startup scan and its memory sampled (no DAC_READ_SEARCH needed). Absent runtime
//    sockets turn their providers off with one log line each (a CRI-O node has no containerd).
// 2. The same without each of those capabilities in turn: it exits 1, naming that one.
// The runtime's default seccomp profile is collector-seccomp.test.ts.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { cgroupV2Root, missingKernelCapture, openCapture } from '../../collector/src/kernel/addon.js';
import { FLAG } from '../../collector/src/kernel/layout.js';
import { processPrivileges } from '../../collector/src/kernel/privileges.js';
import { bpfObjects } from '../../collector/src/sources.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch, KtrailEvent } from '../../schemas/types.js';
import { deleteTopics } from '../support/kafka.js';
import { daemonSetCapabilities, exec, missingTool, type Run, track } from '../support/privileges.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(repo, 'collector/src/cli.ts');
const kafka = endpointOrReason(inject('kafka'));
const NOBODY = 65534;

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
        // Its removal: the kernel's last reading of its (v1 on a hybrid host) memory cgroup.
        container.remove();
        await new Promise((r) => setTimeout(r, 1_000));
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
      const memory = events.filter((e) => e.kind === 'memory_sample' && e.cgroupId === container.cgroupId);
      expect(memory.some((e) => e.flags === 0)).toBe(true);
      // kt_memory_release ran too (tp_btf: CAP_PERFMON), and its record reached the v2 cgroup.
      expect(memory.filter((e) => e.flags === FLAG.memoryRelease)).toHaveLength(1);
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
