// `deploy/local/kafka.sh topics`: creates the ktrail topics on a broker, idempotently.
// Settings come from flags, then the same environment variables the ktrail config reads
// (KTRAIL_KAFKA_BROKERS, KTRAIL_KAFKA_TOPIC_PREFIX, KTRAIL_KAFKA_PARTITIONS,
// KTRAIL_KAFKA_REPLICATION_FACTOR), then ktrail's defaults; authentication and TLS from the
// ktrail config's environment (KTRAIL_KAFKA_SASL_*, KTRAIL_KAFKA_TLS_*, docs/kafka.md).
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../../../common/config.js';
import { createKafka } from '../../../common/kafka.js';
import { kafkaSecurityOptions } from '../../../common/kafka-security.js';
import { DEFAULT_PARTITIONS, DEFAULT_TOPIC_PREFIX, ensureTopics } from '../../../common/kafka-topics.js';
import { createLogger } from '../../../common/log.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const env = process.env;
const program = new Command('kafka-topics')
  .description('create the ktrail topics (idempotent; fails on a partition-count mismatch)')
  .option('--brokers <list>', 'comma-separated host:port', env.KTRAIL_KAFKA_BROKERS ?? '127.0.0.1:19092')
  .option('--prefix <prefix>', 'topic name prefix', env.KTRAIL_KAFKA_TOPIC_PREFIX ?? DEFAULT_TOPIC_PREFIX)
  .option(
    '--partitions <n>',
    'partitions per topic',
    positiveInt,
    Number(env.KTRAIL_KAFKA_PARTITIONS ?? DEFAULT_PARTITIONS),
  )
  .option(
    '--replication-factor <n>',
    'copies per partition (default: min(3, brokers the cluster reports))',
    positiveInt,
    env.KTRAIL_KAFKA_REPLICATION_FACTOR === undefined
      ? undefined
      : Number(env.KTRAIL_KAFKA_REPLICATION_FACTOR),
  )
  .parse();

const opts = program.opts<{
  brokers: string;
  prefix: string;
  partitions: number;
  replicationFactor?: number;
}>();
const logger = createLogger('kafka-topics');
const kafka = createKafka(
  {
    brokers: opts.brokers.split(',').map((b) => b.trim()),
    clientId: 'ktrail-topics',
    ...kafkaSecurityOptions(loadConfig({ env }).kafka),
  },
  logger,
);
const admin = kafka.admin();
try {
  await admin.connect();
  const result = await ensureTopics(admin, {
    prefix: opts.prefix,
    partitions: opts.partitions,
    replicationFactor: opts.replicationFactor,
  });
  const { replicationFactor: rf, minInsyncReplicas: isr, brokers } = result.replication;
  for (const topic of Object.values(result.names))
    console.log(
      result.created.includes(topic)
        ? `created  ${topic}  (${opts.partitions} partitions, ${rf} copies, min.insync.replicas ${isr})`
        : `exists   ${topic}  (${opts.partitions} partitions)`,
    );
  if (result.fewerReplicas.length > 0)
    console.log(
      `warning: ${result.fewerReplicas.join(', ')} keep fewer than ${rf} copies (created on fewer brokers); ` +
        `the cluster has ${brokers}: raise them with kafka-reassign-partitions`,
    );
} catch (err) {
  console.error(`kafka topics: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await admin.disconnect();
}
