// The collector's Kafka sink scavenges once external memory (kafkajs' Buffers) grew by a
// threshold: checked here by counting scavenges, not by timing them.
import { describe, expect, it } from 'vitest';
import { createBufferReclaimer } from '../../common/buffer-reclaim.js';

describe('buffer reclaimer', () => {
  it('scavenges once external memory grew by the threshold, not before', () => {
    const reclaimer = createBufferReclaimer(8 * 2 ** 20);
    reclaimer.check();
    expect(reclaimer.scavenges).toBe(0);
    const kept: Buffer[] = [];
    kept.push(Buffer.alloc(2 ** 20));
    reclaimer.check();
    expect(reclaimer.scavenges).toBe(0);
    for (let i = 0; i < 9; i++) kept.push(Buffer.alloc(2 ** 20));
    reclaimer.check();
    expect(reclaimer.scavenges).toBe(1);
    // Growth counts again from what the scavenge left.
    reclaimer.check();
    expect(reclaimer.scavenges).toBe(1);
    expect(kept).toHaveLength(10);
  });

  it('rejects a threshold that is not positive', () => {
    expect(() => createBufferReclaimer(0)).toThrow(RangeError);
  });
});
