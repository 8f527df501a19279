// One typed configuration for collector and processor, validated once at start.
// Precedence (lowest first): defaults < config file (YAML or JSON) < environment
// (KTRAIL_SECTION_KEY, e.g. KTRAIL_KAFKA_BROKERS) < command-line overrides
// (--set section.key=value). A bad value is a ConfigError naming the setting and
// what it accepts, as pino's normalize step does for its options.
//
// Secrets (SECRET_SETTINGS) follow one rule: `password` inline (file, KTRAIL_..._PASSWORD)
// or `passwordFile`, a path to read it from (KTRAIL_..._PASSWORD_FILE, as Kubernetes mounts
// Secrets); a later source's choice replaces an earlier one's; never on the command line
// (every user can read it in ps); held as a Secret, which logs and dumps as "[secret]".
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { Secret } from './secret.js';

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
const csv = z.preprocess(
  (v) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : v,
  z.array(z.string().min(1)).min(1),
);

const tlsFiles = {
  /** PEM CA certificate(s) to trust instead of the system's (a private CA). */
  caFile: z.string().min(1).optional(),
  /** PEM client certificate (chain) and its key, together: mutual TLS. */
  certFile: z.string().min(1).optional(),
  keyFile: z.string().min(1).optional(),
};

const tlsSchema = z.object(tlsFiles).strict();

const kafkaTlsSchema = z
  .object({
    ...tlsFiles,
    /** Name to verify in the broker's certificate (and send as SNI) when brokers are addressed by IP. */
    servername: z.string().min(1).optional(),
    /** false accepts any broker certificate: a man in the middle gets the password. Tests only. */
    rejectUnauthorized: z.boolean().optional(),
  })
  .strict();

/** The secret settings; each has a `<name>File` sibling (see the top of this file). */
export const SECRET_SETTINGS = ['kafka.sasl.password', 'clickhouse.password'] as const;

/**
 * The transform that turns a section's `<key>` / `<key>File` pair into one Secret (a file is
 * read when the secret is first used), for the secret at dotted `path`. `required`: one of
 * the two must be set.
 */
function resolveSecret<K extends string>(path: (typeof SECRET_SETTINGS)[number], key: K, required: boolean) {
  const fileKey = `${key}File`;
  return <T extends { [P in K]?: string | undefined }>(
    section: T,
    ctx: z.core.$RefinementCtx<T>,
  ): Omit<T, K> & Record<K, Secret> => {
    const values = section as Record<string, unknown>;
    const inline = values[key] as string | undefined;
    const file = values[fileKey] as string | undefined;
    const issue = (message: string, at: string) =>
      ctx.issues.push({ code: 'custom', message, path: [at], input: undefined });
    let secret: Secret;
    if (inline !== undefined && file !== undefined) {
      issue(`set ${key} or ${fileKey}, not both`, key);
      return z.NEVER;
    }
    if (file !== undefined) secret = Secret.fromFile(`${path}File`, file);
    else if (inline !== undefined) secret = Secret.inline(path, inline);
    else if (required) {
      issue(`required: set ${key} or ${fileKey} (a file, e.g. a mounted Secret)`, key);
      return z.NEVER;
    } else secret = Secret.inline(path, '');
    return { ...section, [key]: secret } as Omit<T, K> & Record<K, Secret>;
  };
}

/** A URL, refused with a password in it: it would show wherever the URL is logged. */
const urlWithoutPassword = z
  .string()
  .url()
  .refine(
    (url) => URL.canParse(url) && new URL(url).password === '',
    'must not hold a password (user:password@): use the password setting or its File variant',
  );

/** A Confluent registry's compatibility levels (what PUT /config/{subject} accepts). */
export const SCHEMA_COMPATIBILITY_LEVELS = [
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
  'NONE',
] as const;
export type SchemaCompatibilityLevel = (typeof SCHEMA_COMPATIBILITY_LEVELS)[number];

const lowerCase = (v: unknown) => (typeof v === 'string' ? v.toLowerCase() : v);

const saslSchema = z
  .object({
    /** Kafka spells them PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; either case is accepted. */
    mechanism: z.preprocess(lowerCase, z.enum(['plain', 'scram-sha-256', 'scram-sha-512'])),
    username: z.string().min(1),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
  })
  .strict()
  .transform(resolveSecret('kafka.sasl.password', 'password', true));

export const configSchema = z
  .object({
    node: z.string().min(1).default(hostname()),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') })
      .strict()
      .default({ level: 'info' }),
    http: z
      .object({
        /** /metrics, /healthz, /readyz. 0 = pick a free port; -1 is not allowed. */
        port: port.default(9464),
        host: z.string().default('127.0.0.1'),
      })
      .strict()
      .default({ port: 9464, host: '127.0.0.1' }),
    kafka: z
      .object({
        brokers: csv.default(['127.0.0.1:19092']),
        clientId: z.string().default('ktrail'),
        topicPrefix: z.string().default('ktrail.'),
        partitions: positiveInt.default(6),
        /** Copies per partition of topics ktrail creates; unset = min(3, brokers), common/kafka-replication.ts. */
        replicationFactor: positiveInt.optional(),
        /** How long a Kafka request may go unanswered (a frozen broker) before it counts as failed. */
        requestTimeoutMs: positiveInt.default(30_000),
        /** true = TLS with the system CAs; kafka.tls turns TLS on by itself (docs/kafka.md). */
        ssl: z.boolean().optional(),
        tls: kafkaTlsSchema.optional(),
        sasl: saslSchema.optional(),
        /**
         * When set, messages use the Confluent wire format with ids from this registry (its
         * Confluent API base, e.g. Apicurio's .../apis/ccompat/v7); docs/schemas.md.
         */
        schemaRegistryUrl: urlWithoutPassword.optional(),
        /** Set on each of ktrail's subjects when it registers: the registry refuses what it forbids. */
        schemaRegistryCompatibility: z.enum(SCHEMA_COMPATIBILITY_LEVELS).default('BACKWARD'),
      })
      .strict()
      .superRefine((kafka, ctx) => {
        if (kafka.ssl === false && kafka.tls !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['ssl'],
            message: 'is false but kafka.tls is set: remove kafka.ssl (kafka.tls turns TLS on)',
          });
        if (
          kafka.tls !== undefined &&
          (kafka.tls.certFile === undefined) !== (kafka.tls.keyFile === undefined)
        )
          ctx.addIssue({
            code: 'custom',
            path: ['tls', kafka.tls.certFile === undefined ? 'certFile' : 'keyFile'],
            message: 'required with kafka.tls.certFile/keyFile: a client certificate and its key go together',
          });
      })
      .prefault({}),
    collector: z
      .object({
        source: z.enum(['ebpf', 'replay']).default('ebpf'),
        replayFile: z.string().optional(),
        bpfObjectDir: z.string().default('bpf/.output'),
        ringBufferBytes: positiveInt
          .refine((n) => (n & (n - 1)) === 0 && n >= 4096, 'must be a power of two >= 4096')
          .default(16 * 1024 * 1024),
        programs: csv.optional(),
        sampleIntervalMs: positiveInt.default(10_000),
        statsIntervalMs: positiveInt.default(10_000),
        batchMaxEvents: positiveInt.default(5_000),
        // Kafka messages stay under 1,000,000 bytes: the batch plus 4 KiB for its envelope.
        batchMaxBytes: positiveInt
          .max(995_904, 'must be <= 995904 (1,000,000-byte messages, 4 KiB kept for the envelope)')
          .default(900_000),
        batchMaxMs: positiveInt.default(500),
        // Unset = derived at start from the memory budget (common/memory-budget.ts): the
        // buffer must fit beside the process in its memory limit (DESIGN.md pitfall 17).
        memoryBudgetBytes: positiveInt.optional(),
        bufferMaxBytes: positiveInt.optional(),
        bufferMaxMessages: positiveInt.optional(),
        shutdownDeadlineMs: positiveInt.default(10_000),
        dockerSocket: z.string().default('/var/run/docker.sock'),
        containerdSocket: z.string().default('/run/containerd/containerd.sock'),
        kubernetes: z.boolean().default(false),
        cgroupRoot: z.string().optional(),
      })
      .strict()
      .prefault({}),
    processor: z
      .object({
        groupId: z.string().default('ktrail-processor'),
        batchMaxRows: positiveInt.default(50_000),
        // 300 ms keeps produce -> queryable p99 under 500 ms at 50k events/s
        // (docs/benchmarks.md); partitions cut together share their inserts
        // (clickhouse/insert-combiner.ts), so a process inserts each table ~3 times a second.
        batchMaxMs: positiveInt.default(300),
        // ...but a batch of fewer than batchSmallRows rows waits until batchSmallMaxMs: an
        // insert's fixed CPU cost, not its rows, is what a trickle pays for; 1,500 ms keeps
        // p99 under 2 s at low rates too (docs/processor.md). batchSmallRows 0 = off.
        batchSmallRows: z.number().int().min(0).default(1_000),
        batchSmallMaxMs: positiveInt.default(1_500),
        // ...and one still under batchTrickleRows then waits until batchTrickleMaxMs: a
        // partition at a few hundred rows a second cuts every few seconds, not every 1.5 s
        // (CPU at a trickle, docs/processor.md). batchTrickleRows 0 = off.
        batchTrickleRows: z.number().int().min(0).default(500),
        batchTrickleMaxMs: positiveInt.default(5_000),
        lateMetadataWaitMs: z.number().int().min(0).default(5_000),
        lateBufferMaxEvents: positiveInt.default(200_000),
        // Unset = derived at start from the memory budget (common/memory-budget.ts): rows held
        // across all partitions, past which fetching pauses (processor/src/pending-budget.ts).
        memoryBudgetBytes: positiveInt.optional(),
        pendingMaxRows: positiveInt.optional(),
        metadataRetentionMs: positiveInt.default(24 * 3600 * 1000),
        enrichedTopic: z.boolean().default(true),
        // The group notices a member that died without leaving (SIGKILL, OOM kill) only when
        // its session times out, and a restarted member waits that long to get partitions:
        // kafkajs' default of 30 s means a 26-31 s stall after every crash. Heartbeats are sent
        // between fetches and batches (kafkajs has no timer of its own), so the session must
        // outlast the longest pause between them: 1.4 s at most while draining 3M events on
        // the 2-core test machine (docs/processor.md). Brokers accept 6,000-1,800,000 ms
        // (group.min/max.session.timeout.ms).
        sessionTimeoutMs: positiveInt.default(8_000),
        heartbeatIntervalMs: positiveInt.default(1_000),
        // On SIGTERM, first consume and commit up to the end offsets seen at that moment (what
        // the collectors sent before they stopped), at most this long; 0 = leave at once.
        stopCatchUpMs: z.number().int().min(0).default(10_000),
        /** ClickHouse-compatible HTTP endpoint over the embedded store (chDB); 0 = a free port. */
        queryPort: port.default(8124),
        /** Its bearer token (created 0600 if missing); default: query-token beside clickhouse.chdbPath. */
        queryTokenFile: z.string().optional(),
        /** A query there is stopped after this long (it holds the store meanwhile). */
        queryTimeoutMs: positiveInt.default(30_000),
        /** A query there whose result passes this many bytes fails (add a LIMIT or aggregate). */
        queryMaxResultBytes: positiveInt.default(64 * 1024 * 1024),
        alerts: z
          .object({
            oomKill: z.boolean().default(true),
            crashLoopExits: positiveInt.default(3),
            crashLoopWindowMs: positiveInt.default(10 * 60_000),
            tcpSpikeThreshold: positiveInt.default(100),
            tcpSpikeWindowMs: positiveInt.default(60_000),
            sequenceGap: z.boolean().default(true),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .superRefine((p, ctx) => {
        if (p.heartbeatIntervalMs >= p.sessionTimeoutMs)
          ctx.addIssue({
            code: 'custom',
            path: ['heartbeatIntervalMs'],
            message: `must be below processor.sessionTimeoutMs (${p.sessionTimeoutMs}); a third of it or less`,
          });
      })
      .prefault({}),
    clickhouse: z
      .object({
        /** A ClickHouse server (http(s)://host:port). Unset = embedded chDB at chdbPath. */
        url: urlWithoutPassword.optional(),
        chdbPath: z.string().default('data/chdb'),
        database: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier')
          .default('ktrail'),
        username: z.string().default('default'),
        /** Unset: no password (ClickHouse's `default` user). */
        password: z.string().optional(),
        passwordFile: z.string().min(1).optional(),
        tls: tlsSchema.optional(),
        ttlRawDays: positiveInt.default(14),
        ttlRollupDays: positiveInt.default(400),
        /** Inserts per table whose deduplication tokens the engine remembers. */
        dedupWindow: positiveInt.default(1000),
        /** A server cluster's name (remote_servers): replicated tables behind Distributed ones (docs/scale.md). */
        cluster: z
          .string()
          .regex(/^[A-Za-z0-9_{}.-]+$/, 'must be a cluster name from remote_servers')
          .optional(),
      })
      .strict()
      .superRefine((c, ctx) => {
        if (c.cluster !== undefined && c.url === undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['cluster'],
            message: 'needs clickhouse.url: the embedded chDB store is one node',
          });
      })
      .transform(resolveSecret('clickhouse.password', 'password', false))
      .prefault({}),
  })
  .strict();

export type KtrailConfig = z.infer<typeof configSchema>;

export interface LoadConfigOptions {
  /** Path of a YAML or JSON file. */
  file?: string | undefined;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** `section.key=value` strings from --set flags, or an object merged last. */
  overrides?: string[] | Record<string, unknown>;
}

const ENV_PREFIX = 'KTRAIL_';

/** Loads, merges and validates. Throws ConfigError naming every bad setting. */
export function loadConfig(options: LoadConfigOptions = {}): KtrailConfig {
  let merged: Record<string, unknown> = {};
  if (options.file !== undefined) merged = mergeLayer(merged, readConfigFile(options.file));
  merged = mergeLayer(merged, fromEnv(options.env ?? process.env));
  if (Array.isArray(options.overrides)) merged = mergeLayer(merged, fromAssignments(options.overrides));
  else if (options.overrides) merged = mergeLayer(merged, options.overrides);
  return validateConfig(merged);
}

/**
 * deepMerge, and a secret's inline value and file are one setting: the layer that sets
 * either replaces both (a password in the file, the env's PASSWORD_FILE: the file wins).
 */
function mergeLayer(base: Record<string, unknown>, layer: Record<string, unknown>): Record<string, unknown> {
  const out = deepMerge(base, layer);
  for (const path of SECRET_SETTINGS) {
    const inline = getPath(layer, path);
    const file = getPath(layer, `${path}File`);
    if (inline !== undefined && file === undefined) deletePath(out, `${path}File`);
    if (file !== undefined && inline === undefined) deletePath(out, path);
  }
  return out;
}

/**
 * The validated config as JSON for a person (the CLIs' --print-config): secrets show as
 * "[secret]" (Secret.toJSON); URLs can't hold passwords (urlWithoutPassword).
 */
export function printableConfig(config: KtrailConfig): string {
  return JSON.stringify(config, null, 2);
}

export function validateConfig(raw: unknown): KtrailConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (issue) => `  ${issue.path.join('.') || '(root)'}: ${describeIssue(issue)}`,
  );
  throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`, {
    context: { issues: result.error.issues },
  });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown setting(s) ${issue.keys.join(', ')}`;
  return issue.message;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const parsed: unknown = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    if (parsed === null || parsed === undefined) return {};
    if (typeof parsed !== 'object' || Array.isArray(parsed))
      throw new Error('top level must be a mapping of sections');
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`cannot parse config file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Every leaf setting as a dotted path -> its zod type, so env names map to real settings. */
function leafSettings(): Map<string, z.ZodType> {
  const leaves = new Map<string, z.ZodType>();
  const walk = (schema: z.ZodType, path: string[]): void => {
    const inner = unwrap(schema);
    if (inner instanceof z.ZodObject) {
      for (const [key, child] of Object.entries(inner.shape)) walk(child as z.ZodType, [...path, key]);
    } else leaves.set(path.join('.'), inner);
  };
  walk(configSchema, []);
  return leaves;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (;;) {
    if (
      current instanceof z.ZodDefault ||
      current instanceof z.ZodOptional ||
      current instanceof z.ZodPrefault
    )
      current = current.unwrap() as z.ZodType;
    // A preprocess pipes into the real type; a transform (secrets) pipes out of it.
    else if (current instanceof z.ZodPipe)
      current = (current.out instanceof z.ZodTransform ? current.in : current.out) as z.ZodType;
    else return current;
  }
}

/** KTRAIL_KAFKA_BROKERS -> kafka.brokers; KTRAIL_COLLECTOR_BATCH_MAX_EVENTS -> collector.batchMaxEvents. */
export function envNameFor(path: string): string {
  return (
    ENV_PREFIX +
    path
      .replace(/\./g, '_')
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toUpperCase()
  );
}

function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [path, type] of leafSettings()) {
    const value = env[envNameFor(path)];
    if (value !== undefined && value !== '') setPath(out, path, coerce(value, type));
  }
  return out;
}

function fromAssignments(assignments: string[]): Record<string, unknown> {
  const leaves = leafSettings();
  const out: Record<string, unknown> = {};
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set expects section.key=value, got "${assignment}"`);
    const path = assignment.slice(0, eq);
    const type = leaves.get(path);
    if (!type)
      throw new ConfigError(`--set ${path}: unknown setting (known: ${[...leaves.keys()].join(', ')})`);
    if ((SECRET_SETTINGS as readonly string[]).includes(path))
      throw new ConfigError(
        `--set ${path}: a secret is not taken from the command line (any user can read it in ps); ` +
          `use --set ${path}File=FILE, ${envNameFor(`${path}File`)} or the config file`,
      );
    setPath(out, path, coerce(assignment.slice(eq + 1), type));
  }
  return out;
}

/** Strings from env/flags become numbers/booleans where the schema wants them; zod reports the rest. */
function coerce(value: string, type: z.ZodType): unknown {
  if (type instanceof z.ZodNumber && /^-?\d+(\.\d+)?$/.test(value.trim())) return Number(value);
  if (type instanceof z.ZodBoolean && /^(true|false|1|0)$/i.test(value.trim()))
    return /^(true|1)$/i.test(value.trim());
  return value;
}

function getPath(source: Record<string, unknown>, path: string): unknown {
  let node: unknown = source;
  for (const key of path === '' ? [] : path.split('.')) {
    if (!isPlainObject(node)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function deletePath(target: Record<string, unknown>, path: string): void {
  const keys = path.split('.');
  const parent = getPath(target, keys.slice(0, -1).join('.'));
  if (isPlainObject(parent)) delete (parent as Record<string, unknown>)[keys.at(-1) as string];
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys.at(-1) as string] = value;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] =
      isPlainObject(prev) && isPlainObject(value)
        ? deepMerge(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Settings whose default is computed at start (common/memory-budget.ts), as the README says it. */
const DERIVED_DEFAULTS: Record<string, string> = {
  'collector.memoryBudgetBytes': 'the cgroup memory limit, else 512 MiB',
  'kafka.replicationFactor': 'min(3, brokers the cluster reports)',
  'collector.bufferMaxBytes': 'derived from collector.memoryBudgetBytes',
  'collector.bufferMaxMessages': 'collector.bufferMaxBytes / 4096',
  'processor.memoryBudgetBytes': 'the cgroup memory limit, else 1 GiB',
  'processor.pendingMaxRows': 'derived from processor.memoryBudgetBytes',
};

/** The reference table for the README: setting, env variable, default (or how it is derived). */
export function describeSettings(): Array<{
  setting: string;
  env: string;
  default: unknown;
  derived?: string;
}> {
  const defaults = configSchema.parse({ node: '<hostname>' });
  return [...leafSettings().keys()].map((setting) => {
    const derived = DERIVED_DEFAULTS[setting];
    return {
      setting,
      env: envNameFor(setting),
      default: ((value) => (value instanceof Secret ? undefined : value))(
        setting
          .split('.')
          .reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], defaults),
      ),
      ...(derived === undefined ? {} : { derived }),
    };
  });
}
