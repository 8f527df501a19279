// Produce -> queryable latency of the bench's messages: each send's acks give the messages'
// offsets, the processor's stored hook gives the moment a cut's inserts returned (synchronous
// inserts: queryable from then on); a message's latency is from its send to the first stored
// cut of its partition that reaches its offset.
import type { RecordMetadata } from 'kafkajs';

interface Sent {
  partition: number;
  offset: bigint;
  sentAt: number;
}

interface Stored {
  partition: number;
  last: bigint;
  at: number;
}

export class LatencyLedger {
  private readonly sent: Sent[] = [];
  private readonly stored: Stored[] = [];

  constructor(private readonly partitionOf: (node: string) => number) {}

  /** The processor's stored hook (ProcessorHooks.onStored). */
  readonly onStored = (cut: { partition: number; last: bigint }): void => {
    this.stored.push({ partition: cut.partition, last: cut.last, at: performance.now() });
  };

  /** One send's acks: one per partition, its base offset, and the send's messages to it in order. */
  recordSend(acks: readonly RecordMetadata[], nodes: readonly string[], sentAt: number): void {
    for (const ack of acks) {
      const n = nodes.filter((node) => this.partitionOf(node) === ack.partition).length;
      for (let i = 0; i < n; i++)
        this.sent.push({
          partition: ack.partition,
          offset: BigInt(ack.baseOffset ?? '0') + BigInt(i),
          sentAt,
        });
    }
  }

  /** Messages acked so far. */
  get messages(): number {
    return this.sent.length;
  }

  private storedAt(m: Sent): number | undefined {
    return this.stored.find((c) => c.partition === m.partition && c.last >= m.offset)?.at;
  }

  /** Whether every acked message is in a stored cut. */
  allStored(): boolean {
    return this.sent.every((m) => this.storedAt(m) !== undefined);
  }

  /** p50 and p99 in ms; a message never stored counts as infinitely late. */
  percentiles(): { p50: number; p99: number } {
    const latencies = this.sent
      .map((m) => (this.storedAt(m) ?? Number.POSITIVE_INFINITY) - m.sentAt)
      .sort((a, b) => a - b);
    const pct = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] as number;
    return { p50: pct(0.5), p99: pct(0.99) };
  }
}
