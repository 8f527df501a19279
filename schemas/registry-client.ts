// A small Confluent Schema Registry client over fetch: register a schema under a subject
// (the registry answers with its id), set a subject's compatibility level, and fetch a
// schema by id; ids and schemas are cached for the life of the process. Tested against a
// real registry (Apicurio Registry's Confluent-compatible API, deploy/local/registry.sh).
//
// Errors say what to do with them:
//   - TransientError: unreachable, timed out, 5xx or 429: retry later;
//   - SchemaIdNotFoundError (a PoisonError): the registry answered that it has no such id;
//     the message naming it can never be read;
//   - RegistryRefusedError: any other refusal (an incompatible schema, bad credentials):
//     retrying the same request will not help until a person acts.
import type { SchemaCompatibilityLevel as CompatibilityLevel } from '../common/config.js';
import { ConfigError, KtrailError, PoisonError, TransientError } from '../common/errors.js';

export type { CompatibilityLevel };

export interface SchemaRegistryOptions {
  /** Base URL of the Confluent API, e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7 */
  url: string;
  /** Basic auth, as the registry's `basic.auth.user.info` (user:password). */
  basicAuth?: string;
  timeoutMs?: number;
}

export interface SchemaRegistryClient {
  /** The base URL, for messages. */
  readonly url: string;
  /** Registers (or finds) `schema` under `subject`; returns the registry's schema id. */
  register(subject: string, schema: object): Promise<number>;
  /** Sets the subject's compatibility level; false when the subject does not exist yet. */
  setCompatibility(subject: string, level: CompatibilityLevel): Promise<boolean>;
  /** The writer schema JSON for an id found in a Confluent-framed message. */
  getSchemaById(id: number): Promise<Record<string, unknown>>;
}

/** The registry has no schema with this id (Confluent error 40403): its messages are unreadable. */
export class SchemaIdNotFoundError extends PoisonError {}

/** The registry refused the request for good (incompatible schema, credentials, bad request). */
export class RegistryRefusedError extends KtrailError {}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const ABSENT = Symbol('absent');

interface ErrorBody {
  error_code?: number;
  message?: string;
}

function errorBody(text: string): ErrorBody {
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null ? (parsed as ErrorBody) : {};
  } catch {
    return {};
  }
}

export function createSchemaRegistryClient(options: SchemaRegistryOptions): SchemaRegistryClient {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch (cause) {
    throw new ConfigError(`schemaRegistryUrl is not a URL: ${options.url}`, { cause });
  }
  const root = base.href.replace(/\/+$/, '');
  const headers: Record<string, string> = { 'content-type': CONTENT_TYPE, accept: CONTENT_TYPE };
  if (options.basicAuth) headers.authorization = `Basic ${Buffer.from(options.basicAuth).toString('base64')}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const idsBySubjectAndSchema = new Map<string, Promise<number>>();
  const schemasById = new Map<number, Promise<Record<string, unknown>>>();

  /**
   * The parsed answer. A 404 goes to `notFound`: an error to throw, or ABSENT to return;
   * other refusals are thrown as the error their status means (see the top).
   */
  async function call(
    path: string,
    init: RequestInit,
    notFound: (body: ErrorBody) => Error | typeof ABSENT | undefined = () => undefined,
  ): Promise<unknown> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${root}${path}`, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
      text = await res.text();
    } catch (cause) {
      const why = (cause as Error).name === 'TimeoutError' ? `no answer in ${timeoutMs} ms` : 'unreachable';
      throw new TransientError(`schema registry ${why}: ${root}`, { cause, context: { path } });
    }
    if (res.ok) return JSON.parse(text);
    const body = errorBody(text);
    const said = body.message ?? text.slice(0, 200);
    const context = { path, status: res.status, errorCode: body.error_code, body: text.slice(0, 500) };
    if (res.status >= 500 || res.status === 429)
      throw new TransientError(`schema registry ${res.status} on ${path}: ${said}`, { context });
    const mapped = res.status === 404 ? notFound(body) : undefined;
    if (mapped === ABSENT) return ABSENT;
    throw (
      mapped ??
      new RegistryRefusedError(
        `schema registry refused ${init.method ?? 'GET'} ${path}: ${res.status} ${said}`,
        {
          context,
        },
      )
    );
  }

  // Failed lookups are forgotten so a later call retries them.
  function cached<K, V>(map: Map<K, Promise<V>>, key: K, load: () => Promise<V>): Promise<V> {
    let p = map.get(key);
    if (p === undefined) {
      p = load();
      map.set(key, p);
      p.catch(() => map.delete(key));
    }
    return p;
  }

  return {
    url: root,
    register(subject, schema) {
      const text = JSON.stringify(schema);
      return cached(idsBySubjectAndSchema, `${subject}\n${text}`, async () => {
        const out = (await call(`/subjects/${encodeURIComponent(subject)}/versions`, {
          method: 'POST',
          body: JSON.stringify({ schema: text }),
        })) as { id?: unknown };
        if (typeof out.id !== 'number')
          throw new RegistryRefusedError('schema registry answered without an id', { context: { subject } });
        return out.id;
      });
    },
    async setCompatibility(subject, level) {
      const out = await call(
        `/config/${encodeURIComponent(subject)}`,
        { method: 'PUT', body: JSON.stringify({ compatibility: level }) },
        // 40401: no such subject (Apicurio keeps the level with the subject's artifact).
        (body) => (body.error_code === 40401 ? ABSENT : undefined),
      );
      return out !== ABSENT;
    },
    getSchemaById(id) {
      return cached(schemasById, id, async () => {
        const out = (await call(
          `/schemas/ids/${id}`,
          { method: 'GET' },
          (body) =>
            new SchemaIdNotFoundError(`schema id ${id} is not in the schema registry at ${root}`, {
              context: { reason: 'unknown_schema', schemaId: id, errorCode: body.error_code },
            }),
        )) as { schema?: unknown; schemaType?: unknown };
        if (typeof out.schema !== 'string')
          throw new RegistryRefusedError('schema registry answered without a schema', { context: { id } });
        if (out.schemaType !== undefined && out.schemaType !== 'AVRO')
          throw new SchemaIdNotFoundError(`schema id ${id} is a ${String(out.schemaType)} schema, not Avro`, {
            context: { reason: 'unknown_schema', schemaId: id },
          });
        return JSON.parse(out.schema) as Record<string, unknown>;
      });
    },
  };
}
