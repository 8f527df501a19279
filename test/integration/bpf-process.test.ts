// Process lifecycle from the real kernel (issue 3 item 7): known exec with known args,
// exit code 7, death by signal, fork, argv truncation. Root + BTF + native addon.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { KernelEvent } from '../../collector/src/kernel/decode.js';
import { FLAG } from '../../collector/src/kernel/layout.js';
import type { ProcExec, ProcExit, ProcFork } from '../../schemas/types.js';
import {
  buildBpf,
  freshCgroup,
  inCgroups,
  missingKernel,
  openRecorder,
  ownCgroupId,
  type Recorder,
  run,
} from '../support/bpf.js';
import { itReal } from '../support/real.js';

const missing = missingKernel();

const isExec = (e: KernelEvent): e is ProcExec => e.kind === 'proc_exec';
const isExit = (e: KernelEvent): e is ProcExit => e.kind === 'proc_exit';
const isFork = (e: KernelEvent): e is ProcFork => e.kind === 'proc_fork';

describe('process.bpf.o on the real kernel', () => {
  let rec: Recorder;
  beforeAll(() => {
    if (missing) return;
    buildBpf();
    rec = openRecorder(['process']);
  });
  afterAll(() => {
    if (!rec) return;
    // Nothing this file caused may be lost or garbled.
    expect(rec.stats.malformed).toBe(0);
    expect(rec.capture.counters().kernelDrops.slice(0, 3)).toEqual([0, 0, 0]);
    rec.close();
  });

  itReal(missing)('exec of a known binary with known arguments', async () => {
    const token = `ktrail-${process.pid}-${Date.now()}`;
    const child = await run('/bin/echo', [token, 'two words', '']);
    expect(child.status).toBe(0);
    const e = await rec.waitFor((x): x is ProcExec => isExec(x) && x.tgid === child.pid);
    expect(e).toMatchObject({
      pid: child.pid,
      tgid: child.pid,
      ppid: process.pid,
      uid: process.getuid?.(),
      gid: process.getgid?.(),
      comm: 'echo',
      filename: '/bin/echo',
      argsCount: 4,
      args: ['/bin/echo', token, 'two words', ''],
      flags: 0,
      cgroupId: ownCgroupId(),
    });
    expect(e.argsSize).toBe(
      ['/bin/echo', token, 'two words', ''].reduce((n, a) => n + Buffer.byteLength(a) + 1, 0),
    );
  });

  itReal(missing)('exit with code 7', async () => {
    const child = await run('/bin/sh', ['-c', 'exit 7']);
    expect(child.status).toBe(7);
    const e = await rec.waitFor((x): x is ProcExit => isExit(x) && x.tgid === child.pid);
    expect(e).toMatchObject({ exitCode: 7, signal: 0, coreDumped: 0, ppid: process.pid, comm: 'sh' });
    expect(e.startNs).toBeGreaterThan(0n);
    expect(e.startNs).toBeLessThan(e.tsNs);
  });

  itReal(missing)('a process killed by a signal', async () => {
    const child = await run('/bin/sh', ['-c', 'kill -TERM $$; sleep 5']);
    expect(child.signal).toBe('SIGTERM');
    const e = await rec.waitFor((x): x is ProcExit => isExit(x) && x.tgid === child.pid);
    expect(e).toMatchObject({ exitCode: 0, signal: 15, coreDumped: 0 });
  });

  itReal(missing)('fork of a new process, and one exit per process (not per thread)', async () => {
    // sh forks a child that execs /bin/true; the parent waits.
    const child = await run('/bin/sh', ['-c', '/bin/true & wait']);
    expect(child.status).toBe(0);
    const f = await rec.waitFor((x): x is ProcFork => isFork(x) && x.parentTgid === child.pid);
    expect(f.childTgid).toBe(f.childPid);
    expect(f.childPid).not.toBe(child.pid);
    expect(f).toMatchObject({ pid: child.pid, tgid: child.pid, comm: 'sh' });
    const exec = await rec.waitFor((x): x is ProcExec => isExec(x) && x.tgid === f.childPid);
    expect(exec).toMatchObject({ filename: '/bin/true', ppid: child.pid });
    await rec.waitFor((x) => isExit(x) && x.tgid === f.childPid);
    // node itself is multi-threaded: its threads never produced fork records.
    expect(rec.events.some((x) => isFork(x) && x.childTgid === process.pid)).toBe(false);
  });

  itReal(missing)('argv longer than the bound is cut and flagged, count stays exact', async () => {
    const args = Array.from({ length: 300 }, (_, i) => `arg-${i}`); // ~2.4 KB of argv
    const child = await run('/bin/true', args);
    expect(child.status).toBe(0);
    const e = await rec.waitFor((x): x is ProcExec => isExec(x) && x.tgid === child.pid);
    expect(e.flags & FLAG.truncated).toBe(FLAG.truncated);
    expect(e.argsCount).toBe(301);
    expect(e.argsSize).toBe(1024);
    expect(e.args.slice(0, 3)).toEqual(['/bin/true', 'arg-0', 'arg-1']);
    // Every complete argument is exact; only the last one may be cut.
    const full = ['/bin/true', ...args];
    expect(e.args.slice(0, -1)).toEqual(full.slice(0, e.args.length - 1));
  });

  itReal(missing)('the shipped object loads as it is on this kernel, not its compat build', () => {
    // The direct-map argv read below is only tested if it runs: a verifier regression must fail
    // here rather than pass through the compat build's bpf_probe_read_user.
    const o = rec.capture.counters().objects.find((x) => x.path.endsWith('/process.bpf.o'));
    expect(o).toMatchObject({ loaded: true });
    expect(o?.compatPath, o?.compatReason).toBeUndefined();
  });

  itReal(missing)('argv is exact wherever it sits in its page, across a page boundary too', async () => {
    // The strings sit at the top of the new stack, under the environment's: growing the
    // environment by an odd step moves argv through a whole page, every alignment, and across
    // the page boundary (the program copies one page through the direct map and leaves a
    // range in two pages to bpf_probe_read_user).
    const args = ['sweep', 'a'.repeat(200), 'b'.repeat(199), '', 'c'.repeat(150), 'end'];
    const full = ['/bin/true', ...args];
    for (let pad = 0; pad < 4096 + 600; pad += 61) {
      const child = await run('/bin/true', args, { KTRAIL_PAD: 'p'.repeat(pad) });
      expect(child.status).toBe(0);
      const e = await rec.waitFor((x): x is ProcExec => isExec(x) && x.tgid === child.pid);
      expect({ pad, args: e.args, flags: e.flags }).toEqual({ pad, args: full, flags: 0 });
      expect(e.argsSize).toBe(full.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0));
    }
  });

  itReal(missing)('a kernel that refuses the object gets its compat build, argv still exact', async () => {
    // Stands in for a kernel without bpf_rdonly_cast (before 6.2): the same source calling a
    // kfunc no kernel has, which libbpf refuses as a whole object. Next to it, compat/ holds
    // the build without kfuncs, as bpf/.output does.
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-compat-'));
    try {
      buildBpf({ OUTPUT: dir, EXTRA_CFLAGS: '-Dbpf_rdonly_cast=kt_no_such_kfunc' }, [
        join(dir, 'process.bpf.o'),
        join(dir, 'compat/process.bpf.o'),
      ]);
      const compat = openRecorder([join(dir, 'process.bpf.o')]);
      try {
        const o = compat.capture.counters().objects[0];
        expect(o).toMatchObject({ loaded: true, compatPath: join(dir, 'compat/process.bpf.o') });
        expect(o?.compatReason).toContain('kt_no_such_kfunc');
        const args = ['compat', 'x'.repeat(45), ''];
        const child = await run('/bin/true', args);
        const e = await compat.waitFor((x): x is ProcExec => isExec(x) && x.tgid === child.pid);
        expect(e).toMatchObject({ args: ['/bin/true', ...args], flags: 0, filename: '/bin/true' });
      } finally {
        compat.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  itReal(missing)('settings: kt_cfg_args_max and the cgroup allowlist', async () => {
    const cg = freshCgroup('filter');
    // Only the fresh cgroup is allowed; at most 2 argv entries.
    const filtered = openRecorder(['process'], { args_max: 2, filter_enabled: 1 });
    try {
      filtered.capture.allowCgroup(cg.id);
      const inside = await run('/bin/sh', inCgroups([join(cg.dir, 'cgroup.procs')], '/bin/echo a b c'));
      const outside = await run('/bin/echo', ['x', 'y', 'z']);
      expect(inside.status).toBe(0);
      const e = await filtered.waitFor(
        (x): x is ProcExec => isExec(x) && x.tgid === inside.pid && x.comm === 'echo',
      );
      expect(e).toMatchObject({ args: ['/bin/echo', 'a'], argsCount: 4, argsSize: 12, cgroupId: cg.id });
      expect(e.flags & FLAG.truncated).toBe(FLAG.truncated);
      // The unfiltered capture saw the outside exec; the filtered one must not have.
      await rec.waitFor((x) => isExec(x) && x.tgid === outside.pid);
      await filtered.waitFor((x) => isExit(x) && x.tgid === inside.pid);
      expect(filtered.events.some((x) => x.tgid === outside.pid)).toBe(false);
    } finally {
      filtered.close();
      cg.remove();
    }
  });

  itReal(missing)('settings: kt_cfg_ignore_tgid drops what that process does, not its children', async () => {
    // A shell that waits for commands on stdin; its pid is known before the capture opens.
    const sh = spawn('/bin/sh', [], { stdio: ['pipe', 'ignore', 'ignore'] });
    const shPid = sh.pid ?? 0;
    const ignoring = openRecorder(['process'], { ignore_tgid: shPid });
    try {
      const closed = new Promise((resolve) => sh.on('close', resolve));
      sh.stdin.end('/bin/true ignored-parent\nexit 3\n');
      await closed;
      // The child is another process: its exec and exit are reported...
      const child = await ignoring.waitFor(
        (x): x is ProcExec => isExec(x) && x.args[1] === 'ignored-parent' && x.ppid === shPid,
      );
      await ignoring.waitFor((x) => isExit(x) && x.tgid === child.tgid);
      // ...the ignored shell's fork of it and its own exit (code 3) are not; the
      // unfiltered capture proves they happened.
      await rec.waitFor((x) => isExit(x) && x.tgid === shPid && x.exitCode === 3);
      await rec.waitFor((x) => isFork(x) && x.parentTgid === shPid && x.childTgid === child.tgid);
      expect(ignoring.events.filter((x) => x.tgid === shPid)).toEqual([]);
    } finally {
      ignoring.close();
    }
  });
});
