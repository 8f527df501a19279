// Kernel-side loss is counted exactly (issue 3 item 1, DESIGN pitfall 8): with a one-page
// ring buffer an exec storm overflows it, and for each program
//   records delivered + kt_drops[slot] == events the workload caused.
// The cgroup allowlist makes "caused" exact: only the storm's fresh cgroup is reported.
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { openCapture } from '../../collector/src/kernel/addon.js';
import { createDecoder } from '../../collector/src/kernel/decode.js';
import { PROG_SLOT } from '../../collector/src/kernel/layout.js';
import { bpfObject, buildBpf, freshCgroup, inCgroups, missingKernel, run } from '../support/bpf.js';
import { itReal } from '../support/real.js';

const missing = missingKernel();

describe('kernel drop accounting', () => {
  itReal(missing)('delivered + dropped == caused, per program, under ring-buffer overflow', async () => {
    buildBpf();
    const cg = freshCgroup('drops');
    const decoder = createDecoder();
    const got = { proc_exec: 0, proc_fork: 0, proc_exit: 0 };
    const capture = openCapture(
      {
        objects: [bpfObject('process')],
        ringBufferBytes: 4096, // 3 exec records fit
        batchMaxBytes: 64 << 10,
        batchMaxMs: 10,
        filterCgroups: [cg.id],
      },
      (buf, records) => {
        for (const e of decoder.decode(buf, records).events)
          if (e.kind in got) got[e.kind as keyof typeof got]++;
      },
    );
    try {
      const N = 200;
      const P = 4; // parallel loops: producers on both CPUs outrun the one consumer
      // In the cgroup: one exec of the inner sh, which forks P loop shells; each runs N x
      // (fork, exec /bin/true, exit) and exits; then the inner sh exits.
      const loop = `i=0; while [ $i -lt ${N} ]; do /bin/true; i=$((i+1)); done`;
      const inner = `/bin/sh -c '${Array(P).fill(`(${loop}) &`).join(' ')} wait'`;
      const r = await run('/bin/sh', inCgroups([join(cg.dir, 'cgroup.procs')], inner));
      expect(r.status).toBe(0);
      const expected = { proc_exec: P * N + 1, proc_fork: P * N + P, proc_exit: P * N + P + 1 };
      const drops = () => {
        const d = capture.counters().kernelDrops;
        return {
          proc_exec: d[PROG_SLOT.proc_exec] ?? 0,
          proc_fork: d[PROG_SLOT.proc_fork] ?? 0,
          proc_exit: d[PROG_SLOT.proc_exit] ?? 0,
        };
      };
      const accounted = () => {
        const d = drops();
        return {
          proc_exec: got.proc_exec + d.proc_exec,
          proc_fork: got.proc_fork + d.proc_fork,
          proc_exit: got.proc_exit + d.proc_exit,
        };
      };
      for (let i = 0; i < 100 && JSON.stringify(accounted()) !== JSON.stringify(expected); i++)
        await new Promise((res) => setTimeout(res, 50));
      expect(accounted()).toEqual(expected);
      expect(decoder.stats.malformed).toBe(0);
      expect(capture.counters().lostRecords).toBe(0); // the loss here is the kernel's, not the addon's
      // Not asserted (timing-dependent): that drops happened. Seen here: 99-176 exec drops per run.
      console.info('kernel drops under a 4 KiB ring:', drops());
    } finally {
      capture.close();
      cg.remove();
    }
  });
});
