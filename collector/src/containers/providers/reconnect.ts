// The reconnect loop the Docker and containerd providers share: when the daemon's stream is
// lost, connect() again after a delay that doubles on every failure, up to a bound.
import type { Logger } from '../../../../common/log.js';

export type Reconnector = {
  /** Starts the loop at the shortest delay (the stream was just lost). */
  schedule(): void;
  /** Clears a pending attempt (stop()). */
  cancel(): void;
  /** Successful reconnects so far. */
  readonly reconnects: number;
};

export function createReconnector(options: {
  /** "docker", "containerd": names the daemon in the log lines. */
  what: string;
  log: Logger;
  /** First delay after a loss (default 500 ms), doubling up to maxBackoffMs (default 30 s). */
  minBackoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
  stopped: () => boolean;
  connect: () => Promise<void>;
  /** Cleans up after a failed attempt, before the next one is scheduled. */
  onFailure?: () => void;
}): Reconnector {
  const { what, log } = options;
  const minBackoffMs = options.minBackoffMs ?? 500;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  let reconnects = 0;

  function schedule(delay: number): void {
    if (options.stopped()) return;
    timer = setTimeout(async () => {
      timer = undefined;
      try {
        await options.connect();
        reconnects++;
        log.info({ reconnects }, `${what} reconnected`);
      } catch (err) {
        options.onFailure?.();
        const next = Math.min(delay * 2, maxBackoffMs);
        log.warn({ err: (err as Error).message, retryInMs: next }, `${what} not reachable; retrying`);
        schedule(next);
      }
    }, delay);
    timer.unref();
  }

  return {
    schedule: () => schedule(minBackoffMs),
    cancel() {
      if (timer) clearTimeout(timer);
    },
    get reconnects() {
      return reconnects;
    },
  };
}
