// Every program passes the verifier and attaches, with default settings and with every
// kt_cfg_* setting changed: settings are constants the verifier folds, so each value can
// take a different path through it (a non-zero kt_cfg_args_max once blew the 1M
// instruction limit while the default loaded fine).
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { buildBpf, missingKernel, openRecorder, type Recorder } from '../support/bpf.js';
import { itReal } from '../support/real.js';

const missing = missingKernel();
const ALL = ['process', 'cgroup', 'cpu', 'memory', 'tcp', 'net', 'block'];
const PROGRAMS = [
  'kt_proc_exec',
  'kt_proc_fork',
  'kt_proc_exit',
  'kt_cgroup_mkdir',
  'kt_cgroup_rmdir',
  'kt_cgroup_rename',
  'kt_cpu_switch',
  'kt_oom_mark_victim',
  'kt_memory_release',
  'kt_tcp_state',
  'kt_tcp_send_reset',
  'kt_tcp_receive_reset',
  'kt_net_ingress',
  'kt_net_egress',
  'kt_block_issue',
  'kt_block_done',
];

describe('verifier acceptance of every program', () => {
  const open: Recorder[] = [];
  beforeAll(() => {
    if (!missing) buildBpf();
  });
  afterAll(() => {
    for (const r of open) r.close();
  });

  for (const [label, cfg] of [
    ['default settings', {}],
    [
      'every setting non-default',
      { filter_enabled: 1, ignore_tgid: 1, args_max: 3, cgroup_all_hierarchies: 1, wakeup_bytes: 0 },
    ],
  ] as const) {
    itReal(missing)(`all ${PROGRAMS.length} programs load and attach (${label})`, () => {
      const rec = openRecorder(ALL, cfg);
      open.push(rec);
      const c = rec.capture.counters();
      const failed = c.programs
        .filter((p) => !p.attached)
        .map((p) => `${p.name}: ${(p.error ?? '').slice(-300)}`);
      expect(failed).toEqual([]);
      expect(c.programs.map((p) => p.name).sort()).toEqual([...PROGRAMS].sort());
      expect(c.unusedCfg).toEqual([]);
      rec.close();
    });
  }
});
