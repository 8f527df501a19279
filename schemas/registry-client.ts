// A small Confluent Schema Registry client over fetch: register a schema under a subject
// (the registry answers with its global id) and fetch a schema by id, both cached for the
// life of the process. No registry runs on ktrail's test machines, so this module is
// exercised only through the wire-format golden bytes (see docs/schemas.md).
import { ConfigError, KtrailError, TransientError } from '../common/errors.js';

export interface SchemaRegistryOptions {
  /** Base URL, e.g. http://registry:8081 */
  url: string;
  /** Basic auth, as the registry's `basic.auth.user.info` (user:password). */
  basicAuth?: string;
  timeoutMs?: number;
}

export interface SchemaRegistryClient {
  /** Registers (or finds) `schema` under `subject`; returns the registry's schema id. */
  register(subject: string, schema: object): Promise<number>;
  /** The writer schema JSON for an id found in a Confluent-framed message. */
  getSchemaById(id: number): Promise<Record<string, unknown>>;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

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

  async function call(path: string, init: RequestInit): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${root}${path}`, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (cause) {
      throw new TransientError(`schema registry unreachable: ${root}`, { cause, context: { path } });
    }
    const body = await res.text();
    if (!res.ok) {
      const context = { path, status: res.status, body: body.slice(0, 500) };
      // 5xx and 429 may pass; anything else (unknown id, incompatible schema) will not.
      if (res.status >= 500 || res.status === 429)
        throw new TransientError(`schema registry ${res.status}`, { context });
      throw new KtrailError(`schema registry refused ${path}: ${res.status}`, { context });
    }
    return JSON.parse(body);
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
    register(subject, schema) {
      const text = JSON.stringify(schema);
      return cached(idsBySubjectAndSchema, `${subject}\n${text}`, async () => {
        const out = (await call(`/subjects/${encodeURIComponent(subject)}/versions`, {
          method: 'POST',
          body: JSON.stringify({ schema: text }),
        })) as { id?: unknown };
        if (typeof out.id !== 'number')
          throw new KtrailError('schema registry answered without an id', { context: { subject } });
        return out.id;
      });
    },
    getSchemaById(id) {
      return cached(schemasById, id, async () => {
        const out = (await call(`/schemas/ids/${id}`, { method: 'GET' })) as { schema?: unknown };
        if (typeof out.schema !== 'string')
          throw new KtrailError('schema registry answered without a schema', { context: { id } });
        return JSON.parse(out.schema) as Record<string, unknown>;
      });
    },
  };
}
