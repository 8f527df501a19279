// Captures one real ring-buffer record per event type from the running kernel into
// test/fixtures/records/<kind>.bin, with <kind>.json holding what the activity that caused
// it KNOWS (pids, ports, byte counts, exit code...), not what the decoder says: the unit
// tests decode the .bin and compare with these facts. Root only; re-run after changing
// events.h:  sudo npx tsx bpf/tools/capture-golden.ts
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, renameSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCapture, recordOffsets } from '../../collector/src/kernel/addon.js';
import { decodeBatch, type KernelEvent } from '../../collector/src/kernel/decode.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const outDir = join(root, 'test/fixtures/records');
const objects = ['process', 'cgroup', 'memory', 'tcp'].map((c) => join(root, 'bpf/.output', `${c}.bpf.o`));

const raws: Array<{ raw: Buffer; ev: KernelEvent }> = [];
const capture = openCapture(
  {
    objects,
    ringBufferBytes: 8 << 20,
    batchMaxBytes: 64 << 10,
    batchMaxMs: 10,
    cfg: { cgroup_all_hierarchies: 1 },
  },
  (buf) => {
    for (const off of recordOffsets(buf)) {
      const raw = Buffer.from(buf.subarray(off, off + buf.readUInt32LE(off + 4)));
      const [ev] = decodeBatch(raw);
      if (ev) raws.push({ raw, ev });
    }
  },
);

function run(file: string, args: string[]): Promise<{ pid: number; status: number | null }> {
  const child = spawn(file, args, { stdio: 'ignore' });
  return new Promise((res) => child.on('close', (status) => res({ pid: child.pid ?? 0, status })));
}

async function find(pred: (e: KernelEvent) => boolean): Promise<{ raw: Buffer; ev: KernelEvent }> {
  for (let i = 0; i < 100; i++) {
    const hit = raws.find((r) => pred(r.ev));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('expected record not captured');
}

function save(kind: string, raw: Buffer, facts: Record<string, unknown>): void {
  writeFileSync(join(outDir, `${kind}.bin`), raw);
  const json = JSON.stringify(facts, (_, v) => (typeof v === 'bigint' ? `${v}n` : v), 2);
  writeFileSync(join(outDir, `${kind}.json`), `${json}\n`);
  console.log(`${kind}: ${raw.length} bytes`);
}

mkdirSync(outDir, { recursive: true });
const cgDir = '/sys/fs/cgroup/unified';
const v1Dir = '/sys/fs/cgroup/memory';

// proc_exec, proc_fork, proc_exit (exit code 7)
const sh = await run('/bin/sh', ['-c', '/bin/echo golden "two words" >/dev/null & wait; exit 7']);
const fork = await find((e) => e.kind === 'proc_fork' && e.parentTgid === sh.pid);
if (fork.ev.kind !== 'proc_fork') throw new Error('unreachable');
const childPid = fork.ev.childPid;
save('proc_fork', fork.raw, { parentPid: sh.pid, parentTgid: sh.pid, childTgid: childPid, comm: 'sh' });
const exec = await find((e) => e.kind === 'proc_exec' && e.tgid === childPid);
save('proc_exec', exec.raw, {
  pid: childPid,
  tgid: childPid,
  ppid: sh.pid,
  filename: '/bin/echo',
  args: ['/bin/echo', 'golden', 'two words'],
  argsCount: 3,
  comm: 'echo',
});
const exit = await find((e) => e.kind === 'proc_exit' && e.tgid === sh.pid);
save('proc_exit', exit.raw, { tgid: sh.pid, ppid: process.pid, exitCode: 7, signal: 0, comm: 'sh' });

// cgroup_mkdir / cgroup_rmdir (v2), cgroup_rename (v1: v2 cannot rename)
const name = `ktrail-golden-${process.pid}`;
mkdirSync(join(cgDir, name));
const cgId = statSync(join(cgDir, name), { bigint: true }).ino;
rmdirSync(join(cgDir, name));
save('cgroup_mkdir', (await find((e) => e.kind === 'cgroup_mkdir' && e.cgroupId === cgId)).raw, {
  cgroupId: cgId,
  path: `/${name}`,
  level: 1,
  hierarchyId: 0,
});
save('cgroup_rmdir', (await find((e) => e.kind === 'cgroup_rmdir' && e.cgroupId === cgId)).raw, {
  cgroupId: cgId,
  path: `/${name}`,
  level: 1,
  hierarchyId: 0,
});
mkdirSync(join(v1Dir, name));
const v1Id = statSync(join(v1Dir, name), { bigint: true }).ino;
renameSync(join(v1Dir, name), join(v1Dir, `${name}-renamed`));
rmdirSync(join(v1Dir, `${name}-renamed`));
save('cgroup_rename', (await find((e) => e.kind === 'cgroup_rename' && e.cgroupId === v1Id)).raw, {
  cgroupId: v1Id,
  path: `/${name}-renamed`,
  level: 1,
});

// oom_kill: 64 MiB v1 memory limit, v2 identity
const memDir = join(v1Dir, `${name}-oom`);
const oomCg = join(cgDir, `${name}-oom`);
mkdirSync(memDir);
mkdirSync(oomCg);
writeFileSync(join(memDir, 'memory.limit_in_bytes'), String(64 << 20));
const hog = `${process.execPath} -e 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'`;
const victim = await run('/bin/sh', [
  '-c',
  `echo $$ > ${memDir}/cgroup.procs && echo $$ > ${oomCg}/cgroup.procs && exec ${hog}`,
]);
const oomId = statSync(oomCg, { bigint: true }).ino;
save('oom_kill', (await find((e) => e.kind === 'oom_kill' && e.cgroupId === oomId)).raw, {
  victimPid: victim.pid,
  pid: victim.pid,
  cgroupId: oomId,
  // The hog is this same node binary: its main thread has our main thread's name ("node",
  // or "MainThread" from Node 24 on).
  comm: readFileSync('/proc/self/comm', 'utf8').trim(),
  limitKb: 64 * 1024,
});
await new Promise((r) => setTimeout(r, 200));
// memory_release: the same v1 memory cgroup's last reading, at its rmdir.
const memId = statSync(memDir, { bigint: true }).ino;
const peakBytes = BigInt(readFileSync(join(memDir, 'memory.max_usage_in_bytes'), 'utf8').trim());
const memoryHierarchy = Number(/^(\d+):memory:/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1]);
rmdirSync(oomCg);
rmdirSync(memDir);
save('memory_release', (await find((e) => e.kind === 'memory_release' && e.cgroupId === memId)).raw, {
  cgroupId: memId,
  path: `/${name}-oom`,
  level: 1,
  hierarchyId: memoryHierarchy,
  flags: 16,
  peakBytes,
  limitBytes: BigInt(64 << 20),
  oomKills: 1n,
});

// tcp_connect, tcp_accept, tcp_close (exact bytes), tcp_reset
const UP = 1000;
const DOWN = 777;
const server = createServer((s: Socket) => {
  let got = 0;
  s.on('data', (d) => {
    got += d.length;
    if (got === UP) s.end(Buffer.alloc(DOWN));
  });
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as AddressInfo).port;
const client = connect(port, '127.0.0.1');
await once(client, 'connect');
const cport = client.localPort ?? 0;
client.on('data', () => {});
client.end(Buffer.alloc(UP));
await once(client, 'close');
const tcpFacts = { sport: cport, dport: port, saddr: '127.0.0.1', daddr: '127.0.0.1', family: 2 };
save('tcp_connect', (await find((e) => e.kind === 'tcp_connect' && e.sport === cport)).raw, {
  ...tcpFacts,
  pid: process.pid,
});
save('tcp_accept', (await find((e) => e.kind === 'tcp_accept' && e.dport === cport)).raw, {
  ...tcpFacts,
  sport: port,
  dport: cport,
});
save('tcp_close', (await find((e) => e.kind === 'tcp_close' && e.sport === cport)).raw, {
  ...tcpFacts,
  bytesSent: BigInt(UP),
  bytesReceived: BigInt(DOWN),
  pid: process.pid,
});
const accepted = once(server, 'connection');
const c2 = connect(port, '127.0.0.1');
c2.on('error', () => {});
await once(c2, 'connect');
const c2port = c2.localPort ?? 0;
const [s2] = (await accepted) as [Socket];
s2.on('error', () => {});
c2.resetAndDestroy();
save('tcp_reset', (await find((e) => e.kind === 'tcp_reset' && e.sport === c2port)).raw, {
  sport: c2port,
  dport: port,
  direction: 0,
  family: 2,
});
server.close();
capture.close();
console.log(`kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`);
