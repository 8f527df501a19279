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
