// Replays a capture file (capture.ts) as a collector event source: the same batches the
// addon delivered, so everything after the kernel runs without root.
import { ConfigError } from '../../../common/errors.js';
import type { EventSource, SourceFlow } from '../collector.js';
import { type CaptureHeader, openCaptureReader } from './capture.js';

export interface ReplayOptions {
  /** Records per second to aim for; 0 = as fast as the consumer takes them (see SourceFlow). */
  rate: number;
  /** Start again at the end of the file until stopped. */
  loop: boolean;
}

export interface ReplaySource extends EventSource {
  readonly header: CaptureHeader;
  readonly done: Promise<void>;
  /** Batches and records delivered so far (all passes). */
  readonly delivered: { batches: number; records: number; passes: number };
}

/** How often a replay waiting for the send buffer to drain looks again. */
const SATURATED_WAIT_MS = 2;

/** Fails here, not on start, when the file is missing or is not a capture. */
export function createReplaySource(file: string, options: ReplayOptions): ReplaySource {
  if (!(options.rate >= 0)) throw new ConfigError(`replay rate must be >= 0 records/s, got ${options.rate}`);
  const reader = openCaptureReader(file);
  const delivered = { batches: 0, records: 0, passes: 0 };
  let stopping = false;
  let running: Promise<void> | undefined;
  let finish!: () => void;
  let fail!: (err: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    finish = res;
    fail = rej;
  });
  // Unhandled only if nobody awaits `done`; a consumer that never looks must not crash the process.
  done.catch(() => {});

  const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));
  // The pacing sleep ends early on stop(): at a low rate it can be minutes long.
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const timer = setTimeout(() => {
        wake = undefined;
        r();
      }, ms);
      wake = () => {
        wake = undefined;
        clearTimeout(timer);
        r();
      };
    });

  async function run(onBatch: (buf: Buffer, records: number) => void, flow?: SourceFlow): Promise<void> {
    const started = performance.now();
    do {
      let sawBatch = false;
      // A batch is onBatch's for the call, as the addon's are: the reader reuses its memory.
      // A cursor rather than an async generator: one wake-up per batch, not a promise chain.
      const cursor = await reader.cursor({ reuse: true });
      try {
        for (;;) {
          if (stopping) return;
          const batch = cursor.next();
          if (batch === undefined) {
            if (await cursor.read()) continue;
            break;
          }
          sawBatch = true;
          onBatch(batch.buf, batch.records);
          delivered.batches++;
          delivered.records += batch.records;
          if (options.rate > 0) {
            // Pace on the total so far: short sleeps don't accumulate error.
            const dueMs = (delivered.records / options.rate) * 1000;
            const aheadMs = dueMs - (performance.now() - started);
            if (aheadMs > 1) await sleep(aheadMs);
            else await yieldToLoop();
          } else {
            await yieldToLoop(); // let timers and I/O run between batches
            // As fast as Kafka takes them, not faster: a backlog would only be memory.
            while (flow?.saturated() && !stopping) await sleep(SATURATED_WAIT_MS);
          }
        }
      } finally {
        await cursor.close();
      }
      delivered.passes++;
      if (!sawBatch) break; // an empty file would loop forever
    } while (options.loop && !stopping);
  }

  return {
    header: reader.header,
    done,
    delivered,
    start(onBatch, flow) {
      if (running) throw new Error('replay source already started');
      running = run(onBatch, flow).then(finish, (err: unknown) => {
        fail(err);
      });
    },
    async stop() {
      stopping = true;
      wake?.();
      await running;
      finish();
    },
    drops() {
      return {}; // a file loses nothing; what the recording host lost is in its own stats
    },
  };
}
