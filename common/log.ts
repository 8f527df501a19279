// Structured logging: one pino root, namespaced children (kafkajs-style `namespace`).
import { type Logger, pino } from 'pino';

const root: Logger = pino({
  name: 'ktrail',
  level: process.env.KTRAIL_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export type { Logger };

/** A child logger for one component, e.g. createLogger('collector.kafka'). */
export function createLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...bindings });
}

export function setLogLevel(level: string): void {
  root.level = level;
}

/**
 * Warnings that can repeat once per event or message (drops, dead letters): the first of a
 * key is logged, then at most one per `intervalMs`, carrying how many were held back since
 * (`suppressed`). What is dropped is counted in metrics and tables either way; this keeps a
 * flood of bad input from becoming a flood of log lines.
 */
export function createThrottledWarn(
  logger: Logger,
  intervalMs = 10_000,
  now: () => number = Date.now,
): (key: string, fields: Record<string, unknown>, msg: string) => void {
  const byKey = new Map<string, { lastAt: number; suppressed: number }>();
  return (key, fields, msg) => {
    const t = now();
    const state = byKey.get(key);
    if (state !== undefined && t - state.lastAt < intervalMs) {
      state.suppressed++;
      return;
    }
    const suppressed = state?.suppressed ?? 0;
    byKey.set(key, { lastAt: t, suppressed: 0 });
    logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
  };
}
