// One error base, as in kafkajs src/errors.js: `retriable` decides between retry with
// backoff and the dead-letter path; `context` carries what a person needs to find the input.
export class KtrailError extends Error {
  readonly retriable: boolean;
  readonly context: Record<string, unknown>;

  constructor(
    message: string,
    options: { retriable?: boolean; cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
    this.context = options.context ?? {};
  }
}

/** Bad configuration: names the setting and what would have been accepted. */
export class ConfigError extends KtrailError {}

/** Input that can never be processed (bad Avro, unknown schema, malformed record). */
export class PoisonError extends KtrailError {}

/** A dependency (Kafka, ClickHouse) that failed in a way worth retrying. */
export class TransientError extends KtrailError {
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(message, { ...options, retriable: true });
  }
}

export function isRetriable(err: unknown): boolean {
  return err instanceof KtrailError ? err.retriable : false;
}
