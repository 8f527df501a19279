// Kafka authentication and TLS against the real broker (a private one with SASL_SSL and
// mutual-TLS listeners, test/support/secure-kafka.ts): the collector (replay source) and
// the processor connect with SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS with a
// private CA, and with a client certificate; events flow into ClickHouse (chDB). Settings
// come from a config file, from env with a password file, from env inline.
// Failures: a wrong password or an untrusted CA is an error naming the mechanism, the user
// or the setting to fix (never the password); the collector keeps capturing and holds
// everything, counted (captured = delivered + dropped + pending); fixing the password file
// lets it deliver what it held, without a restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { testOptions } from '../../bench/processor/harness.js';
import { type BuiltCollector, buildCollector } from '../../collector/src/build.js';
import { type KtrailConfig, loadConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { KafkaAccessError } from '../../common/kafka-security.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { createProcessor, processorTopics } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { itReal } from '../support/real.js';
import { type SecureBroker, secureBrokerMissing, startSecureBroker } from '../support/secure-kafka.js';
import { waitFor } from '../support/wait.js';

const missing = secureBrokerMissing();
const work = mkdtempSync(join(tmpdir(), 'ktrail-kafka-auth-'));
const log = createLogger('test.kafka-auth');
const KINDS = ['tcp_close', 'tcp_connect', 'tcp_accept', 'proc_fork', 'proc_exit', 'proc_exec', 'tcp_reset'];
const MORE_KINDS = ['cgroup_mkdir', 'cgroup_rmdir', 'oom_kill'];

let broker: SecureBroker;
let store: ClickHouseClient;
let capture: string;
let events: number;

beforeAll(async () => {
  if (missing !== undefined) return;
  broker = await startSecureBroker(work);
  capture = join(work, 'stream.ktcap');
  events = (await writeSyntheticCapture(capture, { records: 2_000, perBatch: 100 })).valid;
  store = await createProcessorStore('kafka-auth');
}, 240_000);

afterAll(async () => {
  await store?.close();
  await broker?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** A config for one scenario: auth from `auth` (env) over the test's base settings. */
function configFor(tag: string, env: NodeJS.ProcessEnv, file?: string): KtrailConfig {
  return loadConfig({
    ...(file === undefined ? {} : { file }),
    env,
    overrides: {
      node: `node-${tag}`,
      http: { port: 0 },
      kafka: {
        topicPrefix: `auth-${tag}-${Date.now().toString(36)}.`,
        partitions: 2,
        requestTimeoutMs: 5_000,
      },
      collector: {
        source: 'replay',
        replayFile: capture,
        batchMaxEvents: 200,
        batchMaxMs: 100,
        shutdownDeadlineMs: 3_000,
      },
    },
  });
}

const secretFile = (name: string, text: string): string => {
  const path = join(work, name);
  writeFileSync(path, `${text}\n`, { mode: 0o600 });
  return path;
};

async function rowsOf(node: string): Promise<number> {
  const sum = [...KINDS, ...MORE_KINDS]
    .map((t) => `(SELECT count() FROM ktrail.${t} WHERE node = '${node}')`)
    .join(' + ');
  const [r] = await queryRows<{ n: string }>(store, `SELECT ${sum} AS n`);
  return Number(r?.n);
}

/** Collector: the whole capture through Kafka. Processor: all of it into ClickHouse. */
async function endToEnd(config: KtrailConfig): Promise<void> {
  const built = await buildCollector({ config, replay: { rate: 0, loop: false } });
  await built.start();
  await built.collector.sourceDone;
  const final = await built.stop();
  expect(final).toMatchObject({
    captured: events,
    delivered: events,
    droppedTotal: 0,
    pending: 0,
    unaccounted: 0,
  });

  const processor = createProcessor({
    kafka: createKafka(kafkaClientOptions(config.kafka, 'processor'), log),
    topics: processorTopics(topicNames(config.kafka.topicPrefix)),
    sink: clickHouseSink(store),
    codec: createProcessorCodec(),
    options: testOptions(`${config.kafka.topicPrefix}group`, { batchMaxMs: 300, lateMetadataWaitMs: 300 }),
  });
  await processor.start();
  try {
    await waitFor(
      'rows in ClickHouse',
      async () => ((await rowsOf(config.node)) >= events ? true : undefined),
      60_000,
    );
    expect(await rowsOf(config.node)).toBe(events);
  } finally {
    await processor.stop();
  }
}

/** The error a fresh admin client gets on connect with this config. */
async function connectError(config: KtrailConfig): Promise<Error> {
  const admin = createKafka(
    { ...kafkaClientOptions(config.kafka, 'probe'), retry: { retries: 0 } },
    log,
  ).admin();
  const err = await admin.connect().then(
    () => new Error('connected'),
    (e: Error) => e,
  );
  await admin.disconnect().catch(() => {});
  return err;
}

/** Events in a collector's events topic, deduplicated by sequence. */
async function eventsInKafka(built: BuiltCollector): Promise<number> {
  const resolver = createSchemaResolver();
  const bySeq = new Map<bigint, number>();
  for (const m of await readTopic(broker.plaintext, built.topics.events)) {
    const b = resolver.decodeAs('EventBatch', m.value) as EventBatch;
    bySeq.set(b.sequence, b.events.length);
  }
  return [...bySeq.values()].reduce((a, n) => a + n, 0);
}

describe('Kafka over SASL_SSL and mutual TLS (real broker)', () => {
  itReal(missing)(
    'SASL PLAIN over TLS with a private CA, from a config file',
    async () => {
      const file = join(work, 'plain.yaml');
      writeFileSync(
        file,
        [
          'kafka:',
          `  brokers: [${broker.saslSsl[0]}]`,
          `  tls: { caFile: ${broker.ca.cert} }`,
          `  sasl: { mechanism: PLAIN, username: ${broker.users.plain.username}, password: ${broker.users.plain.password} }`,
        ].join('\n'),
        { mode: 0o600 },
      );
      await endToEnd(configFor('plain', {}, file));
    },
    90_000,
  );

  itReal(missing)(
    'SASL SCRAM-SHA-256 over TLS, from env with KTRAIL_KAFKA_SASL_PASSWORD_FILE',
    async () => {
      const config = configFor('scram256', {
        KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
        KTRAIL_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
        KTRAIL_KAFKA_SASL_USERNAME: broker.users.scram256.username,
        KTRAIL_KAFKA_SASL_PASSWORD_FILE: secretFile('scram256.pw', broker.users.scram256.password),
      });
      await endToEnd(config);
    },
    90_000,
  );

  itReal(missing)(
    'SASL SCRAM-SHA-512 over TLS, from env KTRAIL_KAFKA_SASL_PASSWORD',
    async () => {
      const config = configFor('scram512', {
        KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
        KTRAIL_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        KTRAIL_KAFKA_SASL_USERNAME: broker.users.scram512.username,
        KTRAIL_KAFKA_SASL_PASSWORD: broker.users.scram512.password,
      });
      await endToEnd(config);
    },
    90_000,
  );

  itReal(missing)(
    'mutual TLS: a client certificate, no SASL',
    async () => {
      const config = configFor('mtls', {
        KTRAIL_KAFKA_BROKERS: broker.mtls.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
        KTRAIL_KAFKA_TLS_CERT_FILE: broker.client.cert,
        KTRAIL_KAFKA_TLS_KEY_FILE: broker.client.key,
      });
      await endToEnd(config);
    },
    90_000,
  );

  itReal(missing)(
    'a wrong password: a clear error, everything held and counted, delivered once the file is fixed',
    async () => {
      const { username, password } = broker.users.scram256;
      const wrong = 'not-the-password';
      const pwFile = secretFile('wrong.pw', wrong);
      const config = configFor('wrongpw', {
        KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
        KTRAIL_KAFKA_SASL_MECHANISM: 'scram-sha-256',
        KTRAIL_KAFKA_SASL_USERNAME: username,
        KTRAIL_KAFKA_SASL_PASSWORD_FILE: pwFile,
      });
      const err = await connectError(config);
      expect(err).toBeInstanceOf(KafkaAccessError);
      expect(err.message).toContain(`SASL SCRAM-SHA-256 authentication failed for user "${username}"`);
      expect(err.message).toContain(broker.saslSsl[0]);
      expect(err.message).toMatch(/kafka\.sasl\.passwordFile/);
      expect(err.message).not.toContain(wrong);
      expect(err.message).not.toContain(password);
      // PLAIN says the same for its user.
      const plainErr = await connectError(
        configFor('wrongplain', {
          KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
          KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
          KTRAIL_KAFKA_SASL_MECHANISM: 'plain',
          KTRAIL_KAFKA_SASL_USERNAME: broker.users.plain.username,
          KTRAIL_KAFKA_SASL_PASSWORD: wrong,
        }),
      );
      expect(plainErr.message).toContain(
        `SASL PLAIN authentication failed for user "${broker.users.plain.username}"`,
      );

      // The collector runs on: capturing, holding, counting (its topic check retries too).
      const built = await buildCollector({ config, replay: { rate: 1_000, loop: true } });
      await built.start();
      await waitFor(
        'sends failing',
        () => (built.collector.snapshot().kafkaErrors >= 2 ? true : undefined),
        30_000,
      );
      await new Promise((r) => setTimeout(r, 3_000));
      const held = built.collector.snapshot();
      expect(held.captured).toBeGreaterThan(1_000);
      expect(held.delivered).toBe(0);
      expect(held.droppedTotal).toBe(0);
      expect(held.pending).toBe(held.captured);
      expect(held.unaccounted).toBe(0);
      expect(built.collector.ready()).toBe(false);

      // The mounted Secret is corrected: the next connection reads it, nothing restarts.
      writeFileSync(pwFile, `${password}\n`);
      await waitFor(
        'the backlog delivered',
        () => (built.collector.snapshot().delivered >= held.captured ? true : undefined),
        60_000,
      );
      const final = await built.stop();
      expect(final.unaccounted).toBe(0);
      expect(final.droppedTotal).toBe(0);
      expect(final.pending).toBe(0);
      expect(final.delivered).toBe(final.captured);
      expect(await eventsInKafka(built)).toBe(final.delivered);
    },
    120_000,
  );

  itReal(missing)(
    'an untrusted CA, a missing or untrusted client certificate: clear TLS errors, events held and counted',
    async () => {
      const untrusted = configFor('untrusted', {
        KTRAIL_KAFKA_BROKERS: broker.saslSsl.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.untrustedCa.cert,
        KTRAIL_KAFKA_SASL_MECHANISM: 'plain',
        KTRAIL_KAFKA_SASL_USERNAME: broker.users.plain.username,
        KTRAIL_KAFKA_SASL_PASSWORD: broker.users.plain.password,
      });
      const err = await connectError(untrusted);
      expect(err).toBeInstanceOf(KafkaAccessError);
      expect(err.message).toMatch(
        new RegExp(
          `Kafka broker ${broker.saslSsl[0]}: TLS failed, its certificate is not trusted .*kafka\\.tls\\.caFile`,
        ),
      );
      expect(err.message).not.toContain(broker.users.plain.password);
      // kafka.ssl: true (system CAs) does not know the private CA either.
      const systemCas = configFor('systemcas', {
        KTRAIL_KAFKA_BROKERS: broker.mtls.join(','),
        KTRAIL_KAFKA_SSL: 'true',
      });
      expect((await connectError(systemCas)).message).toMatch(/certificate is not trusted/);

      const noCert = configFor('nocert', {
        KTRAIL_KAFKA_BROKERS: broker.mtls.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
      });
      expect((await connectError(noCert)).message).toMatch(
        /wants a client certificate.*kafka\.tls\.certFile and kafka\.tls\.keyFile/,
      );
      const strangerCert = configFor('strangercert', {
        KTRAIL_KAFKA_BROKERS: broker.mtls.join(','),
        KTRAIL_KAFKA_TLS_CA_FILE: broker.ca.cert,
        KTRAIL_KAFKA_TLS_CERT_FILE: broker.untrustedClient.cert,
        KTRAIL_KAFKA_TLS_KEY_FILE: broker.untrustedClient.key,
      });
      expect((await connectError(strangerCert)).message).toMatch(/refused our client certificate/);

      const built = await buildCollector({ config: untrusted, replay: { rate: 1_000, loop: true } });
      await built.start();
      await waitFor(
        'sends failing',
        () => (built.collector.snapshot().kafkaErrors >= 2 ? true : undefined),
        30_000,
      );
      const held = built.collector.snapshot();
      expect(held.captured).toBeGreaterThan(0);
      expect(held.delivered).toBe(0);
      expect(held.pending + held.droppedTotal).toBe(held.captured);
      expect(held.unaccounted).toBe(0);
      // Stopping gives up on what it holds: counted as dropped at shutdown, not lost silently.
      const final = await built.stop();
      expect(final.delivered).toBe(0);
      expect(final.unaccounted).toBe(0);
      expect(final.droppedTotal).toBe(final.captured);
      expect(final.dropped.shutdown_deadline).toBeGreaterThan(0);
    },
    90_000,
  );
});
