// Every schema ktrail knows: the current .avsc files and the released versions under
// schemas/history/<Name>/vN.avsc. Each is compiled once, at load, and indexed by its
// CRC-64-AVRO fingerprint so a reader can find any message's writer schema.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type avsc from 'avsc';
import { REPO_ROOT } from '../common/repo-root.js';
import { compileSchema } from './avro-types.js';
import {
  fingerprint64,
  fingerprintBytes,
  fullName,
  namespaceOf,
  parsingCanonicalForm,
} from './fingerprint.js';

// The collector's topics, dead letters, then the processor's outputs (events.enriched, alerts).
export const SCHEMA_NAMES = [
  'EventBatch',
  'ContainerRecord',
  'CollectorStats',
  'DeadLetter',
  'EnrichedBatch',
  'Alert',
] as const;
export type SchemaName = (typeof SCHEMA_NAMES)[number];

/** The schema each topic carries, by the topic's role (names come from the topic prefix). */
export const TOPIC_SCHEMAS = {
  events: 'EventBatch',
  containers: 'ContainerRecord',
  stats: 'CollectorStats',
  deadletter: 'DeadLetter',
  enriched: 'EnrichedBatch',
  alerts: 'Alert',
} as const satisfies Record<string, SchemaName>;
export type TopicKind = keyof typeof TOPIC_SCHEMAS;

export const NAMESPACE = 'io.ktrail.v1';

// Directories end with '/': callers append file names.
export const SCHEMAS_DIR = `${join(REPO_ROOT, 'schemas')}/`;
export const EVENTS_DIR = `${SCHEMAS_DIR}events/`;
export const HISTORY_DIR = `${SCHEMAS_DIR}history/`;

export interface SchemaVersion {
  name: SchemaName;
  /** Released version number (schemas/history/<name>/v<N>.avsc); `current` for an unreleased working .avsc. */
  version: number | 'current';
  /** Self-contained schema JSON (event records inlined). */
  schema: Record<string, unknown>;
  canonical: string;
  fingerprint: bigint;
  /** 16 hex digits, the fingerprint's bytes in wire (little-endian) order: the lookup key. */
  fingerprintKey: string;
  type: avsc.Type;
}

type JsonObject = Record<string, unknown>;

function readJson(path: string): JsonObject {
  return JSON.parse(readFileSync(path, 'utf8')) as JsonObject;
}

/** Event record schemas from schemas/events/*.avsc, by full name. */
export function loadEventDefinitions(): Map<string, JsonObject> {
  const defs = new Map<string, JsonObject>();
  for (const file of readdirSync(EVENTS_DIR).filter((f) => f.endsWith('.avsc'))) {
    const schema = readJson(`${EVENTS_DIR}${file}`);
    defs.set(fullName(String(schema.name), schema.namespace as string | undefined), schema);
  }
  return defs;
}

/**
 * Inlines named references to definitions kept in other files at their first occurrence,
 * so the result is one self-contained schema (what gets fingerprinted and archived).
 */
export function expandSchema(schema: JsonObject, defs: Map<string, JsonObject>): JsonObject {
  const seen = new Set<string>();
  const walk = (node: unknown, namespace: string | undefined): unknown => {
    if (typeof node === 'string') {
      const full = fullName(node, namespace);
      const def = defs.get(full);
      if (def === undefined || seen.has(full)) return node;
      seen.add(full);
      return walk(structuredClone(def), namespace);
    }
    if (Array.isArray(node)) return node.map((n) => walk(n, namespace));
    if (node === null || typeof node !== 'object') return node;
    const obj = { ...(node as JsonObject) };
    let ns = namespace;
    if (typeof obj.name === 'string' && ['record', 'error', 'enum', 'fixed'].includes(obj.type as string)) {
      const full = fullName(obj.name, (obj.namespace as string | undefined) ?? namespace);
      seen.add(full);
      ns = namespaceOf(full);
    }
    for (const key of ['type', 'items', 'values'] as const) if (key in obj) obj[key] = walk(obj[key], ns);
    if (Array.isArray(obj.fields)) {
      obj.fields = obj.fields.map((f: JsonObject) => ({ ...f, type: walk(f.type, ns) }));
    }
    return obj;
  };
  return walk(schema, undefined) as JsonObject;
}

/** The working schemas (schemas/<Name>.avsc), expanded. */
export function loadCurrentSchemas(): Record<SchemaName, JsonObject> {
  const defs = loadEventDefinitions();
  const out = {} as Record<SchemaName, JsonObject>;
  for (const name of SCHEMA_NAMES) out[name] = expandSchema(readJson(`${SCHEMAS_DIR}${name}.avsc`), defs);
  return out;
}

/** Released versions of one schema, oldest first. */
export function loadHistorySchemas(
  name: SchemaName,
  dir = HISTORY_DIR,
): { version: number; schema: JsonObject }[] {
  const folder = `${dir}${name}/`;
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .map((file) => /^v(\d+)\.avsc$/.exec(file))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ version: Number(m[1]), schema: readJson(`${folder}${m[0]}`) }))
    .sort((a, b) => a.version - b.version);
}

export function fingerprintKey(fp: bigint): string {
  return fingerprintBytes(fp).toString('hex');
}

export function describeVersion(
  name: SchemaName,
  version: number | 'current',
  schema: JsonObject,
): SchemaVersion {
  const fingerprint = fingerprint64(schema);
  return {
    name,
    version,
    schema,
    canonical: parsingCanonicalForm(schema),
    fingerprint,
    fingerprintKey: fingerprintKey(fingerprint),
    type: compileSchema(schema),
  };
}

export interface Catalog {
  current: Record<SchemaName, SchemaVersion>;
  /** Every known writer schema (current and released), by fingerprintKey. */
  byFingerprint: Map<string, SchemaVersion>;
  history: Record<SchemaName, SchemaVersion[]>;
}

/** Loads and compiles everything once. */
export function loadCatalog(): Catalog {
  const currentJson = loadCurrentSchemas();
  const current = {} as Record<SchemaName, SchemaVersion>;
  const history = {} as Record<SchemaName, SchemaVersion[]>;
  const byFingerprint = new Map<string, SchemaVersion>();
  for (const name of SCHEMA_NAMES) {
    history[name] = loadHistorySchemas(name).map((h) => describeVersion(name, h.version, h.schema));
    for (const v of history[name]) byFingerprint.set(v.fingerprintKey, v);
    // Released already? Then it goes by its version number; 'current' means unreleased.
    const latest = history[name].at(-1);
    const working = describeVersion(name, 'current', currentJson[name]);
    current[name] =
      latest !== undefined && latest.fingerprint === working.fingerprint
        ? { ...working, version: latest.version }
        : working;
    // The current schema wins its own fingerprint (same bytes, but the live type object).
    byFingerprint.set(current[name].fingerprintKey, current[name]);
  }
  return { current, byFingerprint, history };
}
