// Registers a writer's schemas in a Confluent registry, one subject per topic
// (TopicNameStrategy: `<topic>-value`, what Kafka Connect, ClickHouse and most tools expect),
// and sets the configured compatibility level on each subject, so the registry refuses a
// later schema that level forbids. A registry that is down or refuses is retried with
// backoff; the writer holds its messages meanwhile (collector: registry-sink.ts; processor:
// schema-gate.ts), so nothing is sent with an id that does not exist.
import { isRetriable, KtrailError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { TOPIC_SCHEMAS, type TopicKind } from './catalog.js';
import { catalog } from './codec.js';
import type { CompatibilityLevel, SchemaRegistryClient } from './registry-client.js';

export interface SubjectSchema {
  subject: string;
  schema: Record<string, unknown>;
}

/** The subject of a topic's message values (TopicNameStrategy). */
export const valueSubject = (topic: string): string => `${topic}-value`;

/** The subjects of these topics (role -> topic name), each with the current schema its topic carries. */
export function topicSubjects(topics: Partial<Record<TopicKind, string>>): SubjectSchema[] {
  return (Object.entries(topics) as [TopicKind, string][]).map(([kind, topic]) => ({
    subject: valueSubject(topic),
    schema: catalog().current[TOPIC_SCHEMAS[kind]].schema,
  }));
}

export interface SchemaRegistration {
  /** True once every subject has its id. */
  readonly ready: boolean;
  /** The id of a registered subject. */
  idOf(subject: string): number | undefined;
  /** One attempt at registering what is not registered yet (shared while one runs); rejects with its error. */
  attempt(): Promise<void>;
  /** Attempts with backoff until every subject is registered (or close); logs the outage and its end. */
  run(): Promise<void>;
  /** The error of the last failed attempt, until one succeeds. */
  readonly lastError: Error | undefined;
  close(): void;
}

export interface RegistrationOptions {
  client: SchemaRegistryClient;
  subjects: SubjectSchema[];
  compatibility: CompatibilityLevel;
  log: Logger;
  retryInitialMs?: number;
  retryMaxMs?: number;
}

export function createSchemaRegistration(options: RegistrationOptions): SchemaRegistration {
  const { client, compatibility, log } = options;
  const retryInitialMs = options.retryInitialMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const ids = new Map<string, number>();
  let running: Promise<void> | undefined;
  let looping: Promise<void> | undefined;
  let lastError: Error | undefined;
  let closed = false;
  let wake: (() => void) | undefined;

  /** The level first (when the subject exists), so the registry judges the schema by it. */
  async function registerOne({ subject, schema }: SubjectSchema): Promise<void> {
    const existed = await client.setCompatibility(subject, compatibility);
    const id = await client.register(subject, schema);
    if (!existed) await client.setCompatibility(subject, compatibility);
    ids.set(subject, id);
  }

  async function attemptAll(): Promise<void> {
    const pending = options.subjects.filter((s) => !ids.has(s.subject));
    const results = await Promise.allSettled(pending.map(registerOne));
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed < 0) {
      lastError = undefined;
      return;
    }
    const cause = (results[failed] as PromiseRejectedResult).reason as Error;
    const subject = (pending[failed] as SubjectSchema).subject;
    lastError = new KtrailError(`cannot register subject ${subject}: ${cause.message}`, {
      cause,
      retriable: isRetriable(cause),
      context: { subject },
    });
    throw lastError;
  }

  const registration: SchemaRegistration = {
    get ready() {
      return ids.size === options.subjects.length;
    },
    idOf: (subject) => ids.get(subject),
    attempt() {
      if (registration.ready) return Promise.resolve();
      running ??= attemptAll().finally(() => {
        running = undefined;
      });
      return running;
    },
    run() {
      looping ??= (async () => {
        const started = Date.now();
        let delay = retryInitialMs;
        for (let attempt = 1; !closed && !registration.ready; attempt++) {
          try {
            await registration.attempt();
            const registered = Object.fromEntries(ids);
            if (attempt > 1)
              log.info(
                { attempts: attempt, waitedMs: Date.now() - started, registry: client.url, ids: registered },
                'schema registry: schemas registered; held messages go out now',
              );
            else log.info({ registry: client.url, ids: registered }, 'schema registry: schemas registered');
          } catch (err) {
            if (attempt === 1 || attempt % 10 === 0)
              log.warn(
                { err: (err as Error).message, attempt, retryInMs: delay, registry: client.url },
                'schema registry: cannot register the schemas yet; messages are held (bounded) and registration retried',
              );
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, delay);
              t.unref();
              wake = () => {
                clearTimeout(t);
                resolve();
              };
            });
            delay = Math.min(delay * 2, retryMaxMs);
          }
        }
      })();
      return looping;
    },
    get lastError() {
      return lastError;
    },
    close() {
      closed = true;
      wake?.();
    },
  };
  return registration;
}
