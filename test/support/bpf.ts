// Helpers for tests of the eBPF side: where the built objects are, building them, and
// reading their BTF (bpftool, no root needed).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bpfDir = join(repoRoot, 'bpf');
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
    if (!hasCommand(cmd)) return `needs ${cmd} (bpf/install-deps.sh)`;
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'needs kernel BTF (/sys/kernel/btf/vmlinux) to build';
  return undefined;
}

/** Runs `make -C bpf` (a no-op when up to date) so tests always see current objects. */
export function buildBpf(): void {
  execFileSync('make', ['-s', '-C', bpfDir], { stdio: ['ignore', 'ignore', 'inherit'] });
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
