// Helpers for tests of the eBPF side: where the built objects are, building them, and
// reading their BTF (bpftool, no root needed).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  cgroupV2Root as findCgroupV2Root,
  type KernelCapture,
  missingKernelCapture,
  openCapture,
} from '../../collector/src/kernel/addon.js';
import { createDecoder, type DecodeStats, type KernelEvent } from '../../collector/src/kernel/decode.js';
import type { StructLayout } from '../../collector/src/kernel/layout.js';
import { REPO_ROOT } from '../../common/repo-root.js';

export const bpfDir = join(REPO_ROOT, 'bpf');
export const bpfOutput = join(bpfDir, '.output');

/** The loadable object of one concern, e.g. bpfObject('process'). */
export function bpfObject(concern: string): string {
  return join(bpfOutput, `${concern}.bpf.o`);
}

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Undefined when the BPF toolchain (clang, bpftool, make) is present, else why not. */
export function missingBpfToolchain(): string | undefined {
  for (const cmd of ['clang', 'bpftool', 'make'])
    if (!hasCommand(cmd)) return `needs ${cmd} (deploy/local/install.sh)`;
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'needs kernel BTF (/sys/kernel/btf/vmlinux) to build';
  return undefined;
}

/**
 * Runs `make -C bpf` (a no-op when up to date) so tests always see current objects; with
 * `vars` and `targets`, a variant built by the same rules (e.g. OUTPUT elsewhere, EXTRA_CFLAGS).
 */
export function buildBpf(vars: Record<string, string> = {}, targets: string[] = []): void {
  const assignments = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
  execFileSync('make', ['-s', '-C', bpfDir, ...assignments, ...targets], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

// ---- BTF ----

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
}
interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  values?: { name: string; val: number }[];
}

export interface BtfStruct {
  name: string;
  size: number;
  /** member name -> byte offset and byte size */
  members: Map<string, { offset: number; size: number }>;
}

export interface BtfInfo {
  structs: Map<string, BtfStruct>;
  enums: Map<string, Map<string, number>>;
}

/** Reads the structs and enums of an object file's BTF. */
export function readBtf(objectPath: string): BtfInfo {
  const json = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', objectPath], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const types = new Map<number, BtfType>();
  for (const t of (JSON.parse(json) as { types: BtfType[] }).types) types.set(t.id, t);

  const sizeOf = (id: number): number => {
    const t = types.get(id);
    if (!t) throw new Error(`BTF type ${id} missing in ${objectPath}`);
    switch (t.kind) {
      case 'INT':
      case 'STRUCT':
      case 'UNION':
      case 'ENUM':
      case 'ENUM64':
        return t.size ?? 0;
      case 'PTR':
        return 8;
      case 'ARRAY':
        return (t.nr_elems ?? 0) * sizeOf(t.type_id ?? 0);
      case 'TYPEDEF':
      case 'CONST':
      case 'VOLATILE':
      case 'RESTRICT':
      case 'TYPE_TAG':
        return sizeOf(t.type_id ?? 0);
      default:
        throw new Error(`no size for BTF kind ${t.kind}`);
    }
  };

  const structs = new Map<string, BtfStruct>();
  const enums = new Map<string, Map<string, number>>();
  for (const t of types.values()) {
    if (t.kind === 'STRUCT' && t.name.startsWith('kt_')) {
      const members = new Map<string, { offset: number; size: number }>();
      for (const m of t.members ?? [])
        members.set(m.name, { offset: m.bits_offset / 8, size: sizeOf(m.type_id) });
      structs.set(t.name, { name: t.name, size: t.size ?? 0, members });
    } else if (t.kind === 'ENUM' && t.name.startsWith('kt_')) {
      enums.set(t.name, new Map((t.values ?? []).map((v) => [v.name, v.val])));
    }
  }
  return { structs, enums };
}

// ---- kernel capture for tests (real kernel, through the native addon) ----

export interface Recorder {
  /** Every decoded event so far, in arrival order. */
  readonly events: KernelEvent[];
  readonly stats: DecodeStats;
  readonly capture: KernelCapture;
  /** Resolves with the first event matching `pred` (already seen or arriving within timeoutMs). */
  waitFor<T extends KernelEvent>(pred: (e: KernelEvent) => e is T, timeoutMs?: number): Promise<T>;
  waitFor(pred: (e: KernelEvent) => boolean, timeoutMs?: number): Promise<KernelEvent>;
  /** Sums of an aggregate map (kt_cpu, kt_net, kt_block) for one cgroup, by C field name. */
  mapValue(map: string, layout: StructLayout, cgroupId: bigint): Record<string, bigint> | undefined;
  close(): void;
}

/** Undefined when kernel tests can run here (root, BTF, addon built, toolchain), else why not. */
export function missingKernel(): string | undefined {
  return missingBpfToolchain() ?? missingKernelCapture();
}

/**
 * Loads each of `concerns` (bpf/.output/<concern>.bpf.o, or an object's path) into one capture,
 * decoding every batch.
 */
export function openRecorder(concerns: string[], cfg: Record<string, number> = {}): Recorder {
  const decoder = createDecoder();
  const events: KernelEvent[] = [];
  const waiters = new Set<{ pred: (e: KernelEvent) => boolean; resolve: (e: KernelEvent) => void }>();
  const capture = openCapture(
    {
      objects: concerns.map((c) => (c.includes('/') ? c : bpfObject(c))),
      ringBufferBytes: 8 << 20,
      batchMaxBytes: 64 << 10,
      batchMaxMs: 10,
      cfg,
    },
    (buf, records) => {
      for (const e of decoder.decode(buf, records).events) {
        events.push(e);
        for (const w of waiters)
          if (w.pred(e)) {
            waiters.delete(w);
            w.resolve(e);
          }
      }
    },
  );
  return {
    events,
    stats: decoder.stats,
    capture,
    waitFor(pred: (e: KernelEvent) => boolean, timeoutMs = 5000): Promise<KernelEvent> {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (e: KernelEvent) => {
            clearTimeout(timer);
            resolve(e);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no matching kernel event within ${timeoutMs} ms (${events.length} events seen)`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    mapValue(map, layout, cgroupId) {
      for (const [key, value] of capture.readMap(map, 'sum')) {
        if (key.readBigUInt64LE(0) !== cgroupId) continue;
        const out: Record<string, bigint> = {};
        for (const [name, f] of Object.entries(layout.fields))
          if (f.size === 8) out[name] = value.readBigUInt64LE(f.offset);
        return out;
      }
      return undefined;
    },
    close() {
      capture.close();
    },
  };
}

// ---- cgroups ----

/** The v2 mount: /sys/fs/cgroup/unified on a hybrid host (this fleet), /sys/fs/cgroup on pure v2. */
export const cgroupV2Root = findCgroupV2Root() ?? '/sys/fs/cgroup';

/** v2 cgroup id = inode number of the cgroup directory. */
export function cgroupId(dir: string): bigint {
  return statSync(dir, { bigint: true }).ino;
}

/** This process's v2 cgroup id (children inherit it). */
export function ownCgroupId(): bigint {
  const line = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  return cgroupId(join(cgroupV2Root, line?.slice(3) ?? '/'));
}

/** A fresh, empty v2 cgroup directory for one test; remove() waits until it is empty. */
export function freshCgroup(tag: string): { dir: string; path: string; id: bigint; remove(): void } {
  const name = `ktrail-test-${tag}-${process.pid}-${Date.now().toString(36)}`;
  const dir = join(cgroupV2Root, name);
  mkdirSync(dir);
  return {
    dir,
    path: `/${name}`,
    id: cgroupId(dir),
    remove() {
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(dir);
          return;
        } catch {
          execFileSync('sleep', ['0.1']);
        }
      }
    },
  };
}

/** `sh -c` a command after moving the shell into the given cgroup.procs files. */
export function inCgroups(procsFiles: string[], command: string): string[] {
  const moves = procsFiles.map((f) => `echo $$ > ${f}`).join(' && ');
  return ['-c', `${moves} && exec ${command}`];
}

export interface RunResult {
  pid: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion WITHOUT blocking the event loop: batches keep flowing from
 * the addon meanwhile (spawnSync would stall them and overflow the addon's queue).
 */
export function run(file: string, args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ pid: child.pid ?? 0, status, signal, stdout, stderr }));
  });
}
