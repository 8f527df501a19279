// Kafka authentication and TLS: the `kafka` config section's `ssl`, `tls` and `sasl` as
// kafkajs options, and errors that say what to fix. kafkajs reports a wrong password as
// "SASL SCRAM SHA512 authentication failed: ... invalid credentials" (no user) and an
// untrusted broker certificate as "Connection error: unable to verify the first
// certificate"; explainKafkaError names the mechanism, the user, the broker and the setting
// to change, and never the password (kafkajs itself never logs it either).
import type { ConnectionOptions } from 'node:tls';
import {
  type Admin,
  type AdminConfig,
  type Consumer,
  type ConsumerConfig,
  Kafka,
  type KafkaConfig,
  type Producer,
  type ProducerConfig,
  type SASLOptions,
} from 'kafkajs';
import type { KtrailConfig } from './config.js';
import { KtrailError } from './errors.js';
import type { Logger } from './log.js';
import { readSettingFile } from './secret.js';
import { errorChain, explainTlsError } from './tls.js';

export interface KafkaSecurityOptions {
  /** Bootstrap addresses, to name the peer when kafkajs' error does not. */
  brokers?: readonly string[];
  /** kafkajs `ssl`: true = the system CAs; options = a private CA, client certificate... */
  ssl?: boolean | ConnectionOptions;
  sasl?: SASLOptions;
}

/**
 * The section's TLS and SASL as kafkajs options. Certificate files are read now (a
 * ConfigError names the setting). A password from a file is read again at every
 * authentication (kafkajs reads `sasl.password` on each new connection), so fixing or
 * rotating the mounted Secret takes effect without a restart, and nothing buffered is lost.
 */
export function kafkaSecurityOptions(section: KtrailConfig['kafka']): KafkaSecurityOptions {
  const out: KafkaSecurityOptions = {};
  const tls = section.tls;
  if (tls !== undefined) {
    const options: ConnectionOptions = {};
    if (tls.caFile !== undefined) options.ca = readSettingFile('kafka.tls.caFile', tls.caFile);
    if (tls.certFile !== undefined) options.cert = readSettingFile('kafka.tls.certFile', tls.certFile);
    if (tls.keyFile !== undefined) options.key = readSettingFile('kafka.tls.keyFile', tls.keyFile);
    if (tls.servername !== undefined) options.servername = tls.servername;
    if (tls.rejectUnauthorized !== undefined) options.rejectUnauthorized = tls.rejectUnauthorized;
    out.ssl = options;
  } else if (section.ssl === true) out.ssl = true;
  const sasl = section.sasl;
  if (sasl !== undefined) {
    const secret = sasl.password;
    secret.reveal(); // an unreadable password file is a ConfigError now, at start
    // A getter, not a copy: kafkajs keeps this object and reads the password per connection.
    // Not enumerable, so logging these options (JSON, inspect, spread) never shows it.
    out.sasl = Object.defineProperty({ mechanism: sasl.mechanism, username: sasl.username }, 'password', {
      get: () => secret.reveal(),
      enumerable: false,
    }) as SASLOptions;
  }
  return out;
}

/** Settings that work but expose something: said once, at client creation. */
export function warnInsecureKafka(options: KafkaSecurityOptions, log: Logger): void {
  if (options.sasl?.mechanism === 'plain' && !options.ssl)
    log.warn(
      { mechanism: 'PLAIN' },
      'kafka.sasl PLAIN without TLS: the password crosses the network in clear text (set kafka.tls or kafka.ssl)',
    );
  if (typeof options.ssl === 'object' && options.ssl.rejectUnauthorized === false)
    log.warn(
      'kafka.tls.rejectUnauthorized is false: any broker certificate is accepted, so anyone in the path can read the traffic and the password',
    );
}

/**
 * What went wrong and which setting fixes it, when `err` (from kafkajs, any depth) is an
 * authentication or TLS failure; undefined for anything else. Never contains the password.
 */
export function explainKafkaError(err: unknown, options: KafkaSecurityOptions): string | undefined {
  const errors = errorChain(err) as Array<{ name?: string; broker?: string; message?: string }>;
  const broker = errors.find((e) => typeof e.broker === 'string')?.broker;
  const at =
    broker !== undefined
      ? `Kafka broker ${broker}`
      : `Kafka ${options.brokers === undefined ? 'broker' : `brokers ${options.brokers.join(',')}`}`;
  const sasl = errors.find((e) => e.name === 'KafkaJSSASLAuthenticationError');
  if (sasl !== undefined) {
    const mechanism = options.sasl?.mechanism.toUpperCase() ?? 'SASL';
    const user = options.sasl !== undefined && 'username' in options.sasl ? options.sasl.username : '?';
    const fix = /not supported by the server/.test(sasl.message ?? '')
      ? `the listener does not enable ${mechanism} (broker setting sasl.enabled.mechanisms)`
      : `check kafka.sasl.username and the password (kafka.sasl.password or kafka.sasl.passwordFile), and that the broker has user "${user}" for ${mechanism}`;
    return `${at}: SASL ${mechanism} authentication failed for user "${user}" (${sasl.message}): ${fix}`;
  }
  return explainTlsError(
    err,
    at,
    'kafka.tls',
    typeof options.ssl === 'object' && options.ssl.cert !== undefined,
  );
}

/**
 * Authentication or TLS failed: no request got through (nothing can have been written), and
 * retrying helps only once the broker, the Secret or the certificates are fixed.
 */
export class KafkaAccessError extends KtrailError {}

/**
 * Wraps the named async methods of a kafkajs client (connect, send...) so that an
 * authentication or TLS failure is thrown as a KtrailError saying what to fix (the kafkajs
 * error as its cause, so its types stay visible); other errors pass unchanged.
 */
export function explainFailures<T extends object>(
  client: T,
  methods: readonly string[],
  options: KafkaSecurityOptions,
): T {
  const target = client as Record<string, unknown>;
  for (const name of methods) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    target[name] = async (...args: unknown[]) => {
      try {
        return await (original as (...a: unknown[]) => Promise<unknown>).apply(client, args);
      } catch (err) {
        const message = explainKafkaError(err, options);
        if (message === undefined) throw err;
        throw new KafkaAccessError(message, {
          cause: err,
          retriable: true,
          context: {
            mechanism: options.sasl?.mechanism,
            username:
              options.sasl !== undefined && 'username' in options.sasl ? options.sasl.username : undefined,
          },
        });
      }
    };
  }
  return client;
}

/**
 * A kafkajs client whose producers', consumers' and admins' authentication and TLS failures
 * say what to fix (createKafka in common/kafka.ts builds every ktrail client as one).
 */
export class ExplainingKafka extends Kafka {
  readonly #security: KafkaSecurityOptions;

  constructor(config: KafkaConfig, security: KafkaSecurityOptions) {
    super(config);
    this.#security = security;
  }

  override producer(config?: ProducerConfig): Producer {
    return explainFailures(super.producer(config), ['connect', 'send', 'sendBatch'], this.#security);
  }

  override consumer(config: ConsumerConfig): Consumer {
    return explainFailures(super.consumer(config), ['connect'], this.#security);
  }

  override admin(config?: AdminConfig): Admin {
    return explainFailures(super.admin(config), ['connect'], this.#security);
  }
}
