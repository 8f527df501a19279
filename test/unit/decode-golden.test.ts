// Golden ring-buffer records captured from the real kernel (bpf/tools/capture-golden.ts)
// decoded without root. Each <kind>.json holds what the activity that produced the record
// knew (pids, ports, exact byte counts, exit code), not the decoder's own output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDecodeStats, decodeBatch, type KernelEvent } from '../../collector/src/kernel/decode.js';
import {
  EVENT_TYPE,
  KT_HEADER,
  KT_MEMORY_RELEASE,
  RECORD_LAYOUT,
} from '../../collector/src/kernel/layout.js';
import { REPO_ROOT } from '../../common/repo-root.js';

const dir = join(REPO_ROOT, 'test/fixtures/records');
const KINDS = [
  'proc_exec',
  'proc_fork',
  'proc_exit',
  'cgroup_mkdir',
  'cgroup_rmdir',
  'cgroup_rename',
  'oom_kill',
  'tcp_connect',
  'tcp_accept',
  'tcp_close',
  'tcp_reset',
  'memory_release',
] as const;

const raw = (kind: string): Buffer => readFileSync(join(dir, `${kind}.bin`));
const facts = (kind: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(dir, `${kind}.json`), 'utf8'), (_, v) =>
    typeof v === 'string' && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v,
  ) as Record<string, unknown>;

describe('golden kernel records', () => {
  for (const kind of KINDS) {
    it(`${kind}: decodes to the facts of the activity that caused it`, () => {
      const buf = raw(kind);
      const stats = createDecodeStats();
      const events = decodeBatch(buf, stats);
      expect(stats).toMatchObject({ decoded: 1, malformed: 0 });
      const [ev] = events as [KernelEvent];
      expect(ev.kind).toBe(kind);
      expect(buf.readUInt16LE(KT_HEADER.fields.type.offset)).toBe(EVENT_TYPE[kind]);
      expect(ev.tsNs).toBeGreaterThan(0n);
      const { limitKb, ...expected } = facts(kind);
      expect(ev).toMatchObject(expected);
      if (ev.kind === 'oom_kill' && typeof limitKb === 'number') {
        // The victim's RSS is what hit the limit.
        expect(ev.anonRssKb + ev.fileRssKb + ev.shmemRssKb).toBeGreaterThan(BigInt(limitKb / 2));
      }
    });
  }

  it('padding and string tails are zero in every record (no stale ring-buffer bytes)', () => {
    for (const kind of KINDS) {
      const buf = raw(kind);
      const layout = RECORD_LAYOUT[EVENT_TYPE[kind]];
      for (const [name, f] of Object.entries(layout?.fields ?? {}))
        if (name.startsWith('pad'))
          expect(
            buf.subarray(f.offset, f.offset + f.size).every((b) => b === 0),
            `${kind}.${name}`,
          ).toBe(true);
    }
    const exec = raw('proc_exec');
    const used = exec.readUInt32LE(48);
    expect(exec.subarray(328 + used).every((b) => b === 0)).toBe(true);
    const release = raw('memory_release');
    const path = KT_MEMORY_RELEASE.fields.path.offset;
    expect(release.subarray(release.indexOf(0, path)).every((b) => b === 0)).toBe(true);
  });

  it('all golden records laid end to end decode in order', () => {
    const batch = Buffer.concat(KINDS.map(raw));
    const stats = createDecodeStats();
    const events = decodeBatch(batch, stats, [], KINDS.length);
    expect(events.map((e) => e.kind)).toEqual([...KINDS]);
    expect(stats.malformed).toBe(0);
  });

  it('decodes the same from a batch that does not start 8-byte aligned in its memory', () => {
    // u64 fields are read through a BigUint64Array view, which needs an aligned start: a
    // batch at any other byte offset (a slice of a larger buffer) is read from a copy.
    const batch = Buffer.concat(KINDS.map(raw));
    const aligned = decodeBatch(batch, createDecodeStats());
    for (const shift of [1, 3, 4, 7]) {
      const holder = Buffer.alloc(batch.length + 16);
      const base = (8 - (holder.byteOffset % 8)) % 8;
      const slice = holder.subarray(base + shift, base + shift + batch.length);
      batch.copy(slice);
      expect(slice.byteOffset % 8).toBe(shift);
      expect(decodeBatch(slice, createDecodeStats())).toEqual(aligned);
    }
  });
});
