// How many copies of each ktrail topic a cluster keeps, decided in one place: ensureTopics
// (common/kafka.ts) applies it to every topic it creates, whoever calls it (the collector,
// the processor, `kafka.sh topics`). Unless kafka.replicationFactor pins it, it follows the
// broker count the cluster reports: one copy on a single broker, three from three brokers on.
import type { Admin } from 'kafkajs';
import { ConfigError } from './errors.js';

export interface Replication {
  /** Copies of every partition. */
  replicationFactor: number;
  /** Copies an acks=all write needs before it is acknowledged (topic min.insync.replicas). */
  minInsyncReplicas: number;
  /** Brokers the cluster reported when this was decided. */
  brokers: number;
}

/** Copies per partition where the cluster has room for them. */
export const DEFAULT_REPLICATION_FACTOR = 3;

/**
 * The rule: replicationFactor = the configured one, else min(3, brokers);
 * min.insync.replicas = 2 from three copies on (an acknowledged write is on two brokers, and
 * one broker can be lost while writes go on), 1 below that (two copies with 2 in sync would
 * stop every write while either broker is down).
 */
export function replicationFor(brokers: number, configured?: number): Replication {
  if (!Number.isInteger(brokers) || brokers < 1)
    throw new ConfigError(`kafka: the cluster reports ${brokers} brokers; at least one must be up`);
  const replicationFactor = configured ?? Math.min(DEFAULT_REPLICATION_FACTOR, brokers);
  if (!Number.isInteger(replicationFactor) || replicationFactor < 1)
    throw new ConfigError(`kafka.replicationFactor: must be a positive integer, got ${replicationFactor}`);
  if (replicationFactor > brokers)
    throw new ConfigError(
      `kafka.replicationFactor: ${replicationFactor} copies need as many brokers, but the cluster reports ${brokers} ` +
        '(unset it to follow the broker count)',
      { context: { replicationFactor, brokers } },
    );
  const minInsyncReplicas = replicationFactor >= 3 ? 2 : 1;
  return { replicationFactor, minInsyncReplicas, brokers };
}

/** The rule applied to the brokers the cluster reports now (live, registered brokers). */
export async function clusterReplication(admin: Admin, configured?: number): Promise<Replication> {
  const { brokers } = await admin.describeCluster();
  return replicationFor(brokers.length, configured);
}
