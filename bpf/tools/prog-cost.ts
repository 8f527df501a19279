// Kernel cost per event of every ktrail BPF program, from the kernel's own accounting
// (kernel.bpf_stats_enabled=1 -> run_time_ns / run_cnt per program). Loads all objects
// through the native addon, drives a short mixed workload (execs, loopback TCP, fsync'd
// writes; sched_switch and cgroup_skb fire on their own), prints a table, and restores the
// sysctl. Root only, ~10 s:  npx tsx bpf/tools/prog-cost.ts [--execs N] [--conns N]
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openCapture } from '../../collector/src/kernel/addon.js';

const { values } = parseArgs({
  options: { execs: { type: 'string', default: '2000' }, conns: { type: 'string', default: '300' } },
});
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const concerns = ['process', 'cgroup', 'cpu', 'memory', 'tcp', 'net', 'block'];
const objects = concerns.map((c) => join(root, 'bpf/.output', `${c}.bpf.o`));
const statsSysctl = '/proc/sys/kernel/bpf_stats_enabled';

const before = readFileSync(statsSysctl, 'utf8').trim();
writeFileSync(statsSysctl, '1');
let records = 0;
const capture = openCapture(
  { objects, ringBufferBytes: 16 << 20, batchMaxBytes: 256 << 10, batchMaxMs: 20 },
  (_b, n) => {
    records += n;
  },
);
try {
  const t0 = Date.now();
  // Exec storm: a shell loop forking and exec'ing /bin/true.
  const sh = spawn('/bin/sh', [
    '-c',
    `i=0; while [ $i -lt ${values.execs} ]; do /bin/true; i=$((i+1)); done`,
  ]);
  await once(sh, 'close');
  // Loopback TCP: short connections with a few bytes each way.
  const server = createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end('pong'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  for (let i = 0; i < Number(values.conns); i++) {
    const c = connect(port, '127.0.0.1');
    await once(c, 'connect');
    c.on('data', () => {});
    c.end('ping');
    await once(c, 'close');
  }
  server.close();
  // Block IO: 32 MiB with fsync.
  const dir = mkdtempSync(join(tmpdir(), 'ktrail-cost-'));
  execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'f')}`, 'bs=1M', 'count=32', 'conv=fsync'], {
    stdio: 'ignore',
  });
  rmSync(dir, { recursive: true, force: true });
  // cgroup lifecycle
  for (let i = 0; i < 50; i++) {
    const p = `/sys/fs/cgroup/unified/ktrail-cost-${process.pid}-${i}`;
    execFileSync('mkdir', [p]);
    execFileSync('rmdir', [p]);
  }
  await new Promise((r) => setTimeout(r, 300));
  const c = capture.counters();
  console.log(
    `workload ${((Date.now() - t0) / 1000).toFixed(1)} s, ${records} records to JS, kernel drops ${c.kernelDrops.reduce((a, b) => a + b, 0)}`,
  );
  console.log('program                  runs      ns/run');
  for (const p of c.programs) {
    const runs = p.runCount ?? 0;
    const ns = runs > 0 ? (p.runTimeNs ?? 0) / runs : 0;
    console.log(
      `${p.name.padEnd(22)} ${String(runs).padStart(8)} ${ns.toFixed(0).padStart(10)}${p.attached ? '' : `  NOT ATTACHED: ${p.error}`}`,
    );
  }
} finally {
  capture.close();
  writeFileSync(statsSysctl, before);
}
