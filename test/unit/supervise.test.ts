// The supervisor `./ktrail up` runs the collector and the processor under: restarts with
// backoff, gives up on a fatal exit code, stops with SIGTERM then SIGKILL. Fake children and
// fake timers; the real processes are test/e2e/up-processor-crash.test.ts.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type ChildLike, supervise } from '../../deploy/local/supervise.js';

class FakeChild extends EventEmitter implements ChildLike {
  static next = 100;
  readonly pid = FakeChild.next++;
  signals: NodeJS.Signals[] = [];
  /** Whether SIGTERM makes it exit (a stuck child needs SIGKILL). */
  constructor(private readonly obeysTerm = true) {
    super();
  }
  kill(signal: NodeJS.Signals): boolean {
    this.signals.push(signal);
    if (signal === 'SIGKILL' || this.obeysTerm) setTimeout(() => this.emit('exit', null, signal), 10);
    return true;
  }
  crash(code: number | null, signal: NodeJS.Signals | null = null): void {
    this.emit('exit', code, signal);
  }
}

function harness(options: { obeysTerm?: boolean } = {}) {
  const children: FakeChild[] = [];
  const said: string[] = [];
  const fatal: Array<number | null> = [];
  const sup = supervise({
    name: 'processor',
    start: () => {
      const c = new FakeChild(options.obeysTerm ?? true);
      children.push(c);
      return c;
    },
    stopDeadlineMs: 5_000,
    say: (m) => said.push(m),
    onFatal: (code) => fatal.push(code),
  });
  return { sup, children, said, fatal, last: () => children.at(-1) as FakeChild };
}

describe('supervise', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('restarts a crashed child after 1 s, doubling while it keeps crashing, reset once stable', async () => {
    const h = harness();
    expect(h.children).toHaveLength(1);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      h.last().crash(null, 'SIGKILL');
      expect(h.sup.state).toBe('backoff');
      const before = h.children.length;
      let waited = 0;
      while (h.children.length === before) {
        await vi.advanceTimersByTimeAsync(100);
        waited += 100;
      }
      delays.push(waited);
      expect(h.sup.state).toBe('running');
    }
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000]);
    expect(h.sup.restarts).toBe(6);
    // A child that ran for a minute was stable: the next crash waits 1 s again.
    await vi.advanceTimersByTimeAsync(60_000);
    h.last().crash(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.children).toHaveLength(8);
    expect(
      h.said.some((m) => /exited unexpectedly \(signal SIGKILL after 0\.0 s\); restart 1 in 1\.0 s/.test(m)),
    ).toBe(true);
  });

  it('does not restart after a fatal exit code (a bad setting) and reports it', async () => {
    const h = harness();
    h.last().crash(2);
    expect(h.sup.state).toBe('failed');
    expect(h.fatal).toEqual([2]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.children).toHaveLength(1);
    expect(await h.sup.stop()).toBe('not running');
    expect(h.sup.state).toBe('stopped');
  });

  it('stops with SIGTERM and never restarts afterwards', async () => {
    const h = harness();
    const stopped = h.sup.stop();
    expect(h.sup.state).toBe('stopping');
    await vi.advanceTimersByTimeAsync(20);
    expect(await stopped).toBe('exited');
    expect(h.last().signals).toEqual(['SIGTERM']);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.children).toHaveLength(1);
    expect(h.sup.state).toBe('stopped');
  });

  it('sends SIGKILL at the deadline to a child that ignores SIGTERM, and says so', async () => {
    const h = harness({ obeysTerm: false });
    const stopped = h.sup.stop();
    await vi.advanceTimersByTimeAsync(5_020);
    expect(await stopped).toBe('killed');
    expect(h.last().signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(h.said.at(-1)).toMatch(/did not exit within 5 s of SIGTERM: SIGKILL/);
  });

  it('a stop during the backoff cancels the restart', async () => {
    const h = harness();
    h.last().crash(1);
    expect(await h.sup.stop()).toBe('not running');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.children).toHaveLength(1);
  });
});
