// Where the per-boot sequence continues after a collector restart. Downstream, the
// completeness table counts (node, bootId, sequence) duplicates and gaps: a restarted
// collector starting again at 0 in the same boot would look like thousands of duplicates.
//
// The next sequence number is written after every queued EventBatch to a small file named
// by node and boot id (whole, by rename; without fsync): it only has to survive a restart of the process, not of the
// machine (a reboot brings a new boot id and a fresh sequence). Default directory /run/ktrail
// (tmpfs, emptied at boot); KTRAIL_STATE_DIR overrides it (in Kubernetes: a hostPath). If the
// directory is not writable the collector starts at 0 and says so.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';

/** Where the collector keeps what must outlive its process: KTRAIL_STATE_DIR, else /run/ktrail. */
export function stateDir(): string {
  return process.env.KTRAIL_STATE_DIR ?? '/run/ktrail';
}

/** `<dir>/<kind>-<part>-<part>`, each part reduced to characters safe in a file name. */
export function stateFile(dir: string, kind: string, ...parts: string[]): string {
  const safe = (s: string): string => s.replace(/[^0-9a-zA-Z.-]/g, '_');
  return join(dir, [kind, ...parts.map(safe)].join('-'));
}

/**
 * Replaces `file` whole or not at all: a crash mid-write (or a full disk) must not leave a
 * cut number that reads as a valid, smaller sequence.
 */
export function writeStateFile(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

export interface SequenceStore {
  /** The first sequence number this process uses. */
  readonly first: bigint;
  /** Records that `next` is the next number to use (called after each queued batch). */
  save(next: bigint): void;
}

/** The sequence is per node and boot: the file is named by both. */
export function openSequenceStore(node: string, bootId: string, dir = stateDir()): SequenceStore {
  const log = createLogger('collector.sequence');
  const file = stateFile(dir, 'sequence', node, bootId);
  let first = 0n;
  try {
    const text = readFileSync(file, 'utf8').trim();
    if (/^\d+$/.test(text)) first = BigInt(text);
  } catch {
    // first start in this boot
  }
  let writable = true;
  try {
    mkdirSync(dir, { recursive: true });
    writeStateFile(file, first.toString());
  } catch (err) {
    writable = false;
    log.warn({ err, file }, 'cannot persist the sequence number: a restart in this boot starts again at 0');
  }
  log.info({ first: first.toString(), file }, 'sequence continues');
  return {
    first,
    save(next) {
      if (!writable) return;
      try {
        writeStateFile(file, next.toString());
      } catch (err) {
        writable = false;
        log.warn({ err, file }, 'cannot persist the sequence number any more');
      }
    },
  };
}
