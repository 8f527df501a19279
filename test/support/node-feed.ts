// One node's collector output for processor tests: EventBatch messages with the node's own
// sequence (sends are serialised, so sequences reach the partition in order), container
// records keyed node/cgroup, and a trickle of samples between, as a live collector sends
// every interval (the processor's rules run per batch, so a quiet partition runs none).
import type { Producer } from 'kafkajs';
import { BOOT_EPOCH_NS, encodeContainerRecord, encodeEventBatch } from '../../bench/processor/synthetic.js';
import type { KtrailEvent } from '../../schemas/types.js';

export class NodeFeed {
  private sequence = 0n;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly node: string,
    private readonly producer: Producer,
    private readonly topics: { events: string; containers: string },
    /** Unset: the producer's partitioner (by node, like the collector). */
    private readonly partition?: number,
  ) {}

  events(events: KtrailEvent[], bootEpochNs?: bigint): Promise<unknown> {
    return this.serial(() => {
      this.sequence++;
      const value = encodeEventBatch(this.node, this.sequence, events, bootEpochNs);
      return this.producer.send({ topic: this.topics.events, messages: [this.message(this.node, value)] });
    });
  }

  records(records: Record<string, unknown>[]): Promise<unknown> {
    return this.serial(() =>
      this.producer.send({
        topic: this.topics.containers,
        messages: records.map((r) =>
          this.message(`${this.node}/${String(r.cgroupId)}`, encodeContainerRecord(r)),
        ),
      }),
    );
  }

  /** A host cpu sample every `everyMs` until stop(). */
  trickle(everyMs = 300, bootEpochNs: bigint = BOOT_EPOCH_NS): void {
    this.timer = setInterval(() => {
      const tsNs = BigInt(Date.now()) * 1_000_000n - bootEpochNs;
      const sample: KtrailEvent = {
        kind: 'cpu_sample',
        tsNs,
        cgroupId: 1n,
        pid: 0,
        tgid: 0,
        flags: 0,
        cpuNs: 1_000_000n,
        switches: 3n,
        intervalNs: BigInt(everyMs) * 1_000_000n,
      };
      void this.events([sample], bootEpochNs);
    }, everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.chain;
  }

  private message(key: string, value: Buffer) {
    return this.partition === undefined ? { key, value } : { key, value, partition: this.partition };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
