// Co-partitioned assignment, as Kafka Streams does for joined topics: partition p of the
// events topic and partition p of the containers (metadata) topic always go to the same
// member, so each member holds metadata only for the nodes whose events it processes.
import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';

export const CO_PARTITIONED_ASSIGNER_NAME = 'KtrailCoPartitioned';

/** Pure core of the assigner: partition -> member id, same for every co-partitioned topic. */
export function coPartition(
  memberIds: readonly string[],
  partitionCounts: ReadonlyMap<string, number>,
): Map<string, Record<string, number[]>> {
  const members = [...memberIds].sort();
  const out = new Map<string, Record<string, number[]>>();
  for (const m of members) out.set(m, {});
  if (members.length === 0) return out;
  // Contiguous ranges would move fewer partitions on a join, but modulo spreads load
  // evenly for any member count and is trivially the same for every topic.
  for (const [topic, count] of partitionCounts) {
    for (let p = 0; p < count; p++) {
      const member = members[p % members.length] as string;
      const byTopic = out.get(member) as Record<string, number[]>;
      const list = byTopic[topic] ?? [];
      list.push(p);
      byTopic[topic] = list;
    }
  }
  return out;
}

type Cluster = Parameters<PartitionAssigner>[0]['cluster'];

/** The leader may not have every subscribed topic's metadata yet (a member that just joined). */
async function partitionCount(cluster: Cluster, topic: string): Promise<number> {
  try {
    return cluster.findTopicPartitionMetadata(topic).length;
  } catch {
    const c = cluster as unknown as {
      addMultipleTargetTopics(t: string[]): Promise<void>;
      refreshMetadata(): Promise<void>;
    };
    await c.addMultipleTargetTopics([topic]);
    await c.refreshMetadata();
    return cluster.findTopicPartitionMetadata(topic).length;
  }
}

export const coPartitionedAssigner: PartitionAssigner = ({ cluster }) => ({
  name: CO_PARTITIONED_ASSIGNER_NAME,
  version: 0,
  async assign({ members, topics }) {
    const counts = new Map<string, number>();
    for (const topic of topics) counts.set(topic, await partitionCount(cluster, topic));
    const assignment = coPartition(
      members.map((m) => m.memberId),
      counts,
    );
    return [...assignment].map(([memberId, byTopic]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: byTopic,
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return {
      name: CO_PARTITIONED_ASSIGNER_NAME,
      metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});
