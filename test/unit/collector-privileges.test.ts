// Which capability a failed kernel-capture step lacked. The failures below are the ones the
// addon reported on this kernel (6.18) when test/integration/collector-privileges.test.ts took
// one capability away; here the mapping is checked without root, case by case.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runtimeSocketPresent } from '../../collector/src/container-feed.js';
import { configuredCgroupV2Root } from '../../collector/src/kernel/addon.js';
import {
  COLLECTOR_CAPABILITIES,
  capabilitiesOfMask,
  capabilityError,
  processPrivileges,
  type StepFailure,
} from '../../collector/src/kernel/privileges.js';

const held = (...caps: string[]) => ({ uid: 65534, effective: new Set(caps) });
const tracing = (name: string, failedStep?: string, errno?: number): StepFailure => ({
  name,
  type: 'tracing',
  ...(failedStep === undefined ? {} : { failedStep, errno: errno ?? 1 }),
});
const cgroupSkb = (name: string, failedStep?: string, errno?: number): StepFailure => ({
  name,
  type: 'cgroup_skb',
  ...(failedStep === undefined ? {} : { failedStep, errno: errno ?? 1 }),
});

describe('capabilities of a process', () => {
  it('reads the names in a /proc status mask', () => {
    expect([...capabilitiesOfMask('000000c000001000')].sort()).toEqual(['BPF', 'NET_ADMIN', 'PERFMON']);
    expect(capabilitiesOfMask('0000000000200000')).toEqual(new Set(['SYS_ADMIN']));
    expect(capabilitiesOfMask('0000000000000000').size).toBe(0);
  });

  it('takes the effective uid and the effective set from /proc/<pid>/status', () => {
    const status = [
      'Name:\tnode',
      'Uid:\t1000\t65534\t65534\t65534',
      'CapInh:\t000000c000001000',
      'CapPrm:\t000000c000001000',
      'CapEff:\t0000008000000000',
      'CapBnd:\t000000c000001000',
    ].join('\n');
    const p = processPrivileges(status);
    expect(p.uid).toBe(65534);
    expect([...p.effective]).toEqual(['BPF']);
  });

  it('lists the capabilities the DaemonSet adds, each with its reason', () => {
    expect(Object.keys(COLLECTOR_CAPABILITIES).sort()).toEqual(['BPF', 'NET_ADMIN', 'PERFMON']);
    for (const why of Object.values(COLLECTOR_CAPABILITIES)) expect(why.length).toBeGreaterThan(20);
  });
});

describe('a refused capture step, explained', () => {
  it('is nothing to explain when no step failed with EPERM', () => {
    // A verifier rejection is EACCES or EINVAL: a kernel incompatibility, not a privilege.
    const failures = [tracing('kt_proc_exec'), tracing('kt_oom_mark_victim', 'load', 13)];
    expect(capabilityError(failures, held('BPF'))).toBeUndefined();
  });

  it('names CAP_BPF when the shared maps could not be created', () => {
    const failures = [tracing('kt_proc_exec', 'maps'), cgroupSkb('kt_net_ingress', 'maps')];
    const err = capabilityError(failures, held('PERFMON', 'NET_ADMIN'));
    expect(err?.missing).toEqual(['BPF']);
    expect(err?.message).toMatch(
      /^kernel capture needs CAP_BPF \(uid 65534 holds CAP_NET_ADMIN, CAP_PERFMON\)/,
    );
    expect(err?.message).toContain(
      'needs CAP_BPF: creating the shared maps for kt_proc_exec, kt_net_ingress (2 tracing/cgroup_skb programs)',
    );
  });

  it('names CAP_PERFMON when tracing programs fail to load (cgroup_skb needs only CAP_BPF)', () => {
    const failures = [
      tracing('kt_proc_exec', 'load'),
      tracing('kt_cpu_switch', 'load'),
      cgroupSkb('kt_net_ingress'),
    ];
    const err = capabilityError(failures, held('BPF', 'NET_ADMIN'));
    expect(err?.missing).toEqual(['PERFMON']);
    expect(err?.message).toContain(
      'needs CAP_PERFMON: loading kt_proc_exec, kt_cpu_switch (2 tracing programs)',
    );
  });

  it('names CAP_NET_ADMIN when cgroup_skb programs load but cannot attach', () => {
    const failures = [
      tracing('kt_proc_exec'),
      cgroupSkb('kt_net_ingress', 'attach'),
      cgroupSkb('kt_net_egress', 'attach'),
    ];
    const err = capabilityError(failures, held('BPF', 'PERFMON'));
    expect(err?.missing).toEqual(['NET_ADMIN']);
    expect(err?.message).toContain('needs CAP_NET_ADMIN: attaching kt_net_ingress, kt_net_egress');
  });

  it('names CAP_SYS_ADMIN when libbpf had to list module BTFs for a CO-RE relocation', () => {
    const err = capabilityError(
      [tracing('kt_oom_mark_victim', 'module_btf')],
      held('BPF', 'PERFMON', 'NET_ADMIN'),
    );
    expect(err?.missing).toEqual(['SYS_ADMIN']);
  });

  it('names every missing capability, one line per step', () => {
    const failures = [tracing('kt_proc_exec', 'load'), cgroupSkb('kt_net_ingress', 'attach')];
    const err = capabilityError(failures, held('BPF'));
    expect(err?.missing).toEqual(['NET_ADMIN', 'PERFMON']);
    expect(err?.message.split('\n')).toHaveLength(3);
  });

  it('counts CAP_SYS_ADMIN for CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, as the kernel does', () => {
    const failures = [tracing('kt_proc_exec', 'load'), cgroupSkb('kt_net_ingress', 'attach')];
    expect(capabilityError(failures, held('SYS_ADMIN'))?.missing).toEqual([]);
  });

  it('blames a seccomp profile or an LSM when every capability checked is held', () => {
    const err = capabilityError([tracing('kt_proc_exec', 'maps')], {
      uid: 0,
      effective: new Set(['BPF', 'PERFMON', 'NET_ADMIN']),
    });
    expect(err?.missing).toEqual([]);
    expect(err?.message).toMatch(/^kernel capture refused with EPERM, not for a missing capability \(uid 0/);
    expect(err?.message).toContain('although CAP_BPF is held: a seccomp profile or an LSM refuses it');
  });
});

describe('a container runtime socket', () => {
  it('that is absent turns its provider off, said once; one that is there keeps it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-socket-'));
    try {
      const lines: Array<[Record<string, unknown>, string]> = [];
      const log = { info: (obj: Record<string, unknown>, msg: string) => void lines.push([obj, msg]) };
      const absent = join(dir, 'containerd.sock');
      expect(runtimeSocketPresent('containerd', 'collector.containerdSocket', absent, log as never)).toBe(
        false,
      );
      expect(lines).toEqual([
        [
          { runtime: 'containerd', socket: absent, setting: 'collector.containerdSocket' },
          'containerd socket not found: containerd metadata provider off',
        ],
      ]);
      writeFileSync(join(dir, 'docker.sock'), '');
      expect(
        runtimeSocketPresent('docker', 'collector.dockerSocket', join(dir, 'docker.sock'), log as never),
      ).toBe(true);
      expect(lines).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the host cgroupfs a pod is given (collector.cgroupRoot)', () => {
  it('is used at its v2 root: unified/ on a hybrid host, itself on pure v2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-cgroupfs-'));
    try {
      const hybrid = join(dir, 'hybrid');
      mkdirSync(join(hybrid, 'unified'), { recursive: true });
      writeFileSync(join(hybrid, 'unified', 'cgroup.procs'), '');
      expect(configuredCgroupV2Root(hybrid)).toBe(join(hybrid, 'unified'));
      expect(configuredCgroupV2Root(join(hybrid, 'unified'))).toBe(join(hybrid, 'unified'));
      const v2 = join(dir, 'v2');
      mkdirSync(v2);
      writeFileSync(join(v2, 'cgroup.controllers'), '');
      expect(configuredCgroupV2Root(v2)).toBe(v2);
      expect(configuredCgroupV2Root(join(dir, 'other'))).toBe(join(dir, 'other'));
      expect(configuredCgroupV2Root(undefined)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
