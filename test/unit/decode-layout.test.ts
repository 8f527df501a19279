// The kernel/user contract, checked by a program: every ABI struct's size and every
// field's offset and size in the BTF of the compiled objects must equal
// collector/src/kernel/layout.ts, and the enums (types, flags, drop slots) must match.
// Needs the BPF toolchain to build (no root).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect } from 'vitest';
import {
  ALL_STRUCTS,
  EVENT_TYPE,
  FLAG,
  PROG_SLOT,
  PROG_SLOT_MAX,
  RECORD_LAYOUT,
  type StructLayout,
} from '../../collector/src/kernel/layout.js';
import {
  type BtfInfo,
  type BtfStruct,
  bpfOutput,
  buildBpf,
  missingBpfToolchain,
  readBtf,
} from '../support/bpf.js';
import { itReal } from '../support/real.js';

const missing = missingBpfToolchain();

function compare(layout: StructLayout, btf: BtfStruct | undefined, where: string): string[] {
  if (!btf) return [`${where}: struct ${layout.name} missing from BTF`];
  const diffs: string[] = [];
  if (btf.size !== layout.size)
    diffs.push(`${where}: ${layout.name} size BTF ${btf.size} != layout ${layout.size}`);
  for (const [name, m] of btf.members) {
    const l = layout.fields[name];
    if (!l) diffs.push(`${where}: ${layout.name}.${name} in BTF but not in layout.ts`);
    else if (l.offset !== m.offset || l.size !== m.size)
      diffs.push(
        `${where}: ${layout.name}.${name} BTF offset ${m.offset} size ${m.size} != layout offset ${l.offset} size ${l.size}`,
      );
  }
  for (const name of Object.keys(layout.fields))
    if (!btf.members.has(name)) diffs.push(`${where}: ${layout.name}.${name} in layout.ts but not in BTF`);
  return diffs;
}

/** KT_EV_PROC_EXEC -> proc_exec, KT_F_RESET_SENT -> resetSent, KT_SLOT_CPU_SWITCH -> cpu_switch */
const enumKey = (c: string, prefix: string, camel = false): string => {
  const snake = c.slice(prefix.length).toLowerCase();
  return camel ? snake.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase()) : snake;
};

describe('events.h <-> layout.ts (BTF)', () => {
  let anchor: BtfInfo;
  const objects: { file: string; btf: BtfInfo }[] = [];

  beforeAll(() => {
    if (missing) return;
    buildBpf();
    anchor = readBtf(join(bpfOutput, 'layout.o'));
    for (const file of readdirSync(bpfOutput).filter((n) => n.endsWith('.bpf.o')))
      objects.push({ file, btf: readBtf(join(bpfOutput, file)) });
    // Building the BPF objects from a clean tree takes minutes on a loaded 2-core machine.
  }, 300_000);

  itReal(missing)('every ABI struct in layout.o matches layout.ts field by field', () => {
    const diffs = ALL_STRUCTS.flatMap((l) => compare(l, anchor.structs.get(l.name), 'layout.o'));
    expect(diffs).toEqual([]);
    // Nothing in events.h that layout.ts forgot.
    const known = new Set(ALL_STRUCTS.map((l) => l.name));
    expect([...anchor.structs.keys()].filter((n) => !known.has(n))).toEqual([]);
  });

  itReal(missing)('every loadable object carries the ABI structs it writes, and they agree', () => {
    // Which structs each concern writes (ring-buffer records or aggregate map values).
    const writes: Record<string, string[]> = {
      'process.bpf.o': ['kt_header', 'kt_proc_exec', 'kt_proc_fork', 'kt_proc_exit'],
      'cgroup.bpf.o': ['kt_header', 'kt_cgroup_event'],
      'memory.bpf.o': ['kt_header', 'kt_oom_kill', 'kt_memory_release'],
      'tcp.bpf.o': ['kt_header', 'kt_tcp_conn', 'kt_tcp_close', 'kt_tcp_reset'],
      'cpu.bpf.o': ['kt_cpu_value'],
      'net.bpf.o': ['kt_net_value'],
      'block.bpf.o': ['kt_block_value'],
    };
    expect(objects.map((o) => o.file).sort()).toEqual(Object.keys(writes).sort());
    for (const { file, btf } of objects)
      expect([...btf.structs.keys()], file).toEqual(expect.arrayContaining(writes[file] ?? []));
    const byName = new Map(ALL_STRUCTS.map((l) => [l.name, l]));
    const diffs: string[] = [];
    for (const { file, btf } of objects)
      for (const [name, s] of btf.structs) {
        const l = byName.get(name);
        if (l) diffs.push(...compare(l, s, file));
      }
    expect(diffs).toEqual([]);
  });

  itReal(missing)('record sizes are multiples of 8 (records lie end to end in a batch)', () => {
    for (const l of Object.values(RECORD_LAYOUT)) expect(l.size % 8, l.name).toBe(0);
  });

  itReal(missing)('event types, flags and drop slots match the C enums', () => {
    const types = anchor.enums.get('kt_event_type');
    const flags = anchor.enums.get('kt_event_flags');
    const slots = anchor.enums.get('kt_prog_slot');
    expect(types && flags && slots).toBeTruthy();
    expect(Object.fromEntries([...(types ?? [])].map(([k, v]) => [enumKey(k, 'KT_EV_'), v]))).toEqual(
      EVENT_TYPE,
    );
    expect(Object.fromEntries([...(flags ?? [])].map(([k, v]) => [enumKey(k, 'KT_F_', true), v]))).toEqual(
      FLAG,
    );
    const slotEntries = [...(slots ?? [])].filter(([k]) => k !== 'KT_SLOT_MAX');
    expect(Object.fromEntries(slotEntries.map(([k, v]) => [enumKey(k, 'KT_SLOT_'), v]))).toEqual(PROG_SLOT);
    expect(slots?.get('KT_SLOT_MAX')).toBe(PROG_SLOT_MAX);
  });
});
