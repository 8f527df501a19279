// `./ktrail tail <topic>`: prints the messages of one of ktrail's topics as JSON lines,
// decoded with their Avro schemas: what a downstream job (or a person chasing a dead letter)
// receives. kcat shows these as bytes: they are Avro, single-object or Confluent framed.
// Reads from the end unless --from-beginning; stops after --max messages or at Ctrl-C.
// Never commits: a random, throwaway consumer group. --schema prints the topic's current,
// self-contained Avro schema instead (for readers in other languages) and exits.
import { randomUUID } from 'node:crypto';
import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createSchemaRegistryClient } from '../../schemas/registry-client.js';
import {
  createRegistryTopicDecoder,
  createTopicDecoder,
  TOPIC_KINDS,
  type TopicKind,
  topicSchema,
} from '../../schemas/topic-decoder.js';

const program = new Command('ktrail tail')
  .description("print a ktrail topic's messages as JSON lines, Avro-decoded")
  .argument('<topic>', `one of ${TOPIC_KINDS.join(', ')}`, (v: string) => {
    if (!(TOPIC_KINDS as readonly string[]).includes(v))
      throw new InvalidArgumentError(`one of ${TOPIC_KINDS.join(', ')}`);
    return v as TopicKind;
  })
  .option('--from-beginning', 'read the topic from its start, not only new messages', false)
  .option('--max <n>', 'stop after n messages', (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
    return n;
  })
  .option('--schema', "print the topic's current Avro schema (self-contained) and exit", false)
  .option('--config <file>', 'ktrail config file (YAML or JSON); KTRAIL_* environment applies too')
  .parse();

const kind = program.processedArgs[0] as TopicKind;
const opts = program.opts<{ fromBeginning: boolean; max?: number; schema: boolean; config?: string }>();
if (opts.schema) {
  process.stdout.write(`${JSON.stringify(topicSchema(kind), null, 2)}\n`);
  process.exit(0);
}
const config = loadConfig({ file: opts.config });
const names = topicNames(config.kafka.topicPrefix);
const topic = { ...names, enriched: names.eventsEnriched }[kind];

// Stdout carries the messages: logs (kafkajs' included) go to stderr, warnings and worse only.
const log = pino({ name: 'ktrail-tail', level: process.env.KTRAIL_LOG_LEVEL ?? 'warn' }, pino.destination(2));
const kafka = createKafka(kafkaClientOptions(config.kafka, 'tail'), log);
// With a registry (kafka.schemaRegistryUrl), Confluent-framed messages' schemas come from it.
const registryUrl = config.kafka.schemaRegistryUrl;
const decode =
  registryUrl === undefined
    ? createTopicDecoder()
    : createRegistryTopicDecoder(createSchemaRegistryClient({ url: registryUrl }));
const consumer = kafka.consumer({ groupId: `ktrail-tail-${randomUUID()}` });
let seen = 0;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await consumer.disconnect().catch(() => undefined);
  }
  // Into a pipe, stdout is written in the background: exiting at once would cut the lines.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: opts.fromBeginning });
await consumer.run({
  autoCommit: false,
  eachMessage: async ({ partition, message }) => {
    if (stopping) return;
    const where = { partition, offset: message.offset, key: message.key?.toString() ?? null };
    let line: string;
    try {
      const value = message.value === null ? null : await decode(kind, message.value);
      line = JSON.stringify({ ...where, value }, readableJson);
    } catch (err) {
      line = JSON.stringify({ ...where, error: (err as Error).message });
    }
    process.stdout.write(`${line}\n`);
    // Not awaited: kafkajs disconnects only after this handler returns.
    if (opts.max !== undefined && ++seen >= opts.max) void stop(0);
  },
});

/** bigint -> decimal text; bytes (a dead letter's raw message and key) -> base64. */
function readableJson(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  // JSON.stringify has already called Buffer#toJSON: {type: 'Buffer', data: [...]}.
  if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer') {
    const data = (v as { data?: unknown }).data;
    if (Array.isArray(data)) return { base64: Buffer.from(data).toString('base64') };
  }
  return v;
}
