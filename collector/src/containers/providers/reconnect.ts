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
  minBackoffMs: number;
  maxBackoffMs: number;
  stopped: () => boolean;
  connect: () => Promise<void>;
  /** Cleans up after a failed attempt, before the next one is scheduled. */
  onFailure?: () => void;
}): Reconnector {
  const { what, log } = options;
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
        const next = Math.min(delay * 2, options.maxBackoffMs);
        log.warn({ err: (err as Error).message, retryInMs: next }, `${what} not reachable; retrying`);
        schedule(next);
      }
    }, delay);
    timer.unref();
  }

  return {
    schedule: () => schedule(options.minBackoffMs),
    cancel() {
      if (timer) clearTimeout(timer);
    },
    get reconnects() {
      return reconnects;
    },
  };
}
