// Keeps one child process of `./ktrail up` running: a child that exits on its own is started
// again after a backoff (1 s, doubling while it keeps crashing within a minute of its start,
// at most 30 s), unless its exit code says a restart cannot help (a bad setting exits 2).
// Why: capture must not depend on the processor. A processor that crashes only delays
// writes (Kafka holds the events; its restart resumes from the committed offsets), while
// stopping the whole pipeline with it, as `up` did, turned a processor crash into ~31 s of
// no capture at all. The collector is supervised the same way; a gap in its capture shows
// in SQL (the capture_gaps view).
//
// An explicit state machine (STYLE.md): the states, their transitions in one table, and an
// illegal transition throws.
export type SupervisorState = 'running' | 'backoff' | 'stopping' | 'stopped' | 'failed';

const TRANSITIONS: Record<SupervisorState, readonly SupervisorState[]> = {
  running: ['backoff', 'failed', 'stopping'],
  backoff: ['running', 'stopped'],
  stopping: ['stopped'],
  failed: ['stopped'],
  stopped: [],
};

/** What the supervisor needs of a child process (node's ChildProcess has it). */
export interface ChildLike {
  readonly pid?: number | undefined;
  kill(signal: NodeJS.Signals): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

export interface SuperviseOptions {
  name: string;
  start(): ChildLike;
  /** SIGTERM, then SIGKILL after this long (counted and said). */
  stopDeadlineMs: number;
  /** Exit codes after which a restart cannot help: the supervisor gives up (default [2]). */
  fatalExitCodes?: readonly number[];
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A child that ran this long before it exited was stable: the backoff starts over. */
  stableAfterMs?: number;
  /** What happened, for the person running it; 'warn' for an exit or a SIGKILL. */
  say(message: string, level?: 'info' | 'warn'): void;
  /** Every start, the first included (e.g. to record the pid). */
  onStart?(child: ChildLike): void;
  /** The child exited with a fatal code; it stays down. */
  onFatal?(code: number | null): void;
  now?: () => number;
}

export interface Supervisor {
  readonly state: SupervisorState;
  readonly child: ChildLike | undefined;
  /** Starts after the first. */
  readonly restarts: number;
  /** Stops the child (SIGTERM, SIGKILL at the deadline) and never restarts it. */
  stop(): Promise<'exited' | 'killed' | 'not running'>;
}

export function supervise(options: SuperviseOptions): Supervisor {
  const now = options.now ?? Date.now;
  const fatal = options.fatalExitCodes ?? [2];
  const initial = options.initialBackoffMs ?? 1_000;
  const max = options.maxBackoffMs ?? 30_000;
  const stableAfter = options.stableAfterMs ?? 60_000;
  const { name, say } = options;

  let state: SupervisorState = 'running';
  let child: ChildLike | undefined;
  let startedAt = 0;
  let restarts = 0;
  let quickCrashes = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let stopping: Promise<'exited' | 'killed' | 'not running'> | undefined;
  let onStopped: ((how: 'exited' | 'killed') => void) | undefined;
  let killed = false;

  function move(to: SupervisorState): void {
    if (!TRANSITIONS[state].includes(to))
      throw new Error(`supervisor ${name}: ${state} -> ${to} is not allowed`);
    state = to;
  }

  function launch(): void {
    const c = options.start();
    child = c;
    startedAt = now();
    c.once('exit', (code, signal) => exited(c, code, signal));
    options.onStart?.(c);
  }

  function exited(c: ChildLike, code: number | null, signal: NodeJS.Signals | null): void {
    if (c !== child) return;
    if (state === 'stopping') {
      move('stopped');
      onStopped?.(killed ? 'killed' : 'exited');
      return;
    }
    const ranMs = now() - startedAt;
    const how = `${signal === null ? `code ${code}` : `signal ${signal}`} after ${(ranMs / 1000).toFixed(1)} s`;
    if (code !== null && fatal.includes(code)) {
      move('failed');
      say(`${name} exited (${how}): a restart cannot fix that; not restarting`, 'warn');
      options.onFatal?.(code);
      return;
    }
    quickCrashes = ranMs >= stableAfter ? 1 : quickCrashes + 1;
    const delay = Math.min(max, initial * 2 ** (quickCrashes - 1));
    move('backoff');
    say(
      `${name} exited unexpectedly (${how}); restart ${restarts + 1} in ${(delay / 1000).toFixed(1)} s`,
      'warn',
    );
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      move('running');
      restarts++;
      launch();
      say(`${name} restarted (pid ${child?.pid})`);
    }, delay);
  }

  launch();

  return {
    get state() {
      return state;
    },
    get child() {
      return child;
    },
    get restarts() {
      return restarts;
    },
    stop() {
      if (stopping) return stopping;
      if (state === 'backoff' || state === 'failed') {
        if (restartTimer) clearTimeout(restartTimer);
        move('stopped');
      }
      if (state === 'stopped') {
        stopping = Promise.resolve('not running');
        return stopping;
      }
      move('stopping');
      const c = child as ChildLike;
      stopping = new Promise((resolve) => {
        const timer = setTimeout(() => {
          killed = true;
          say(`${name} did not exit within ${options.stopDeadlineMs / 1000} s of SIGTERM: SIGKILL`, 'warn');
          c.kill('SIGKILL');
        }, options.stopDeadlineMs);
        onStopped = (how) => {
          clearTimeout(timer);
          resolve(how);
        };
      });
      say(`stopping ${name} (pid ${c.pid})`);
      c.kill('SIGTERM');
      return stopping;
    },
  };
}
