// CollectorStats messages Kafka had not acknowledged when the collector stopped: kept on
// disk and sent first by the next start, so the loss a shutdown reports (shutdown_deadline
// drops, what the drain delivered) reaches collector_stats even when Kafka was down at the
// time. Without it the final record, the one that says what the shutdown cost, would be the
// one record certain to be lost whenever Kafka was the reason for the loss.
//
// One file per node in the state directory (stateDir(): /run/ktrail, or KTRAIL_STATE_DIR),
// holding the encoded messages as they would have gone to Kafka (single-object Avro or the
// registry's wire format: the schema travels with each one). Written whole to a temp file
// and renamed over the old one, so a crash mid-write leaves the old file or the new one.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createLogger } from '../../common/log.js';
import { stateDir, stateFile, writeStateFile } from './sequence-store.js';

export interface UnsentStatsStore {
  readonly file: string;
  /** The messages a previous run left; [] when there are none (or the file is unreadable). */
  load(): Buffer[];
  /** Replaces what is kept with these messages (an empty list removes the file). */
  save(values: readonly Buffer[]): boolean;
}

interface FileFormat {
  version: 1;
  messages: string[];
}

export function openUnsentStats(node: string, dir = stateDir()): UnsentStatsStore {
  const log = createLogger('collector.unsent-stats');
  const file = stateFile(dir, 'unsent-stats', node);
  return {
    file,
    load() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        return [];
      }
      try {
        const parsed = JSON.parse(text) as FileFormat;
        if (parsed.version !== 1 || !Array.isArray(parsed.messages)) throw new Error('unknown format');
        return parsed.messages.map((m) => Buffer.from(m, 'base64'));
      } catch (err) {
        log.warn({ err, file }, 'unreadable unsent stats file: ignored');
        return [];
      }
    },
    save(values) {
      try {
        if (values.length === 0) {
          rmSync(file, { force: true });
          return true;
        }
        mkdirSync(dir, { recursive: true });
        const body: FileFormat = { version: 1, messages: values.map((v) => v.toString('base64')) };
        writeStateFile(file, JSON.stringify(body));
        return true;
      } catch (err) {
        log.warn({ err, file }, 'cannot keep the unsent stats messages');
        return false;
      }
    },
  };
}
