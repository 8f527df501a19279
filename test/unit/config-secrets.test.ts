// Secrets in the configuration (kafka.sasl.password, clickhouse.password) and the Kafka
// TLS/SASL settings: every way to set them (file, env, secret file), the errors, and that
// the value never shows in JSON, inspect, a config dump, an error or a log line.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig, printableConfig, validateConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';
import { kafkaClientOptions } from '../../common/kafka.js';
import { Secret } from '../../common/secret.js';
import { clickHouseConfigFrom } from '../../processor/src/clickhouse/client.js';

const dir = mkdtempSync(join(tmpdir(), 'ktrail-secrets-'));
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
};
const PASSWORD = 'pw-9f3b1c7e-not-for-logs';

const errorOf = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no error');
};

describe('kafka.sasl from every source', () => {
  it('takes mechanism, user and password from the environment (either case of mechanism)', () => {
    const config = loadConfig({
      env: {
        KTRAIL_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
        KTRAIL_KAFKA_SASL_USERNAME: 'ktrail',
        KTRAIL_KAFKA_SASL_PASSWORD: PASSWORD,
      },
    });
    expect(config.kafka.sasl?.mechanism).toBe('scram-sha-512');
    expect(config.kafka.sasl?.username).toBe('ktrail');
    expect(config.kafka.sasl?.password.reveal()).toBe(PASSWORD);
    expect(kafkaClientOptions(config.kafka).sasl).toMatchObject({
      mechanism: 'scram-sha-512',
      username: 'ktrail',
      password: PASSWORD,
    });
  });

  it('reads KTRAIL_KAFKA_SASL_PASSWORD_FILE without its trailing newline, again on each use', () => {
    const path = file('kafka-pw', `${PASSWORD}\n`);
    const config = loadConfig({
      env: {
        KTRAIL_KAFKA_SASL_MECHANISM: 'plain',
        KTRAIL_KAFKA_SASL_USERNAME: 'u',
        KTRAIL_KAFKA_SASL_PASSWORD_FILE: path,
      },
    });
    const sasl = kafkaClientOptions(config.kafka).sasl as { password: string };
    expect(sasl.password).toBe(PASSWORD);
    writeFileSync(path, 'rotated\r\n');
    expect(sasl.password).toBe('rotated'); // kafkajs reads it per connection
  });

  it('lets a later source switch between password and passwordFile', () => {
    const yaml = file(
      'ktrail.yaml',
      `kafka:\n  sasl:\n    mechanism: plain\n    username: u\n    password: ${PASSWORD}\n`,
    );
    const fromFile = file('later-pw', 'from-file');
    const config = loadConfig({ file: yaml, env: { KTRAIL_KAFKA_SASL_PASSWORD_FILE: fromFile } });
    expect(config.kafka.sasl?.password.reveal()).toBe('from-file');
    expect(config.kafka.sasl?.passwordFile).toBe(fromFile);
  });

  it('refuses both in one source, neither, an unreadable or empty file: naming the setting', () => {
    const both = errorOf(() =>
      validateConfig({
        kafka: { sasl: { mechanism: 'plain', username: 'u', password: PASSWORD, passwordFile: '/x' } },
      }),
    );
    expect(both.message).toContain('kafka.sasl.password: set password or passwordFile, not both');
    expect(both.message).not.toContain(PASSWORD);
    expect(JSON.stringify(both.context)).not.toContain(PASSWORD);

    const none = errorOf(() => validateConfig({ kafka: { sasl: { mechanism: 'plain', username: 'u' } } }));
    expect(none.message).toContain('kafka.sasl.password: required');

    const partial = errorOf(() => loadConfig({ env: { KTRAIL_KAFKA_SASL_PASSWORD: PASSWORD } }));
    expect(partial.message).toMatch(/kafka\.sasl\.mechanism/);
    expect(partial.message).toMatch(/kafka\.sasl\.username/);
    expect(partial.message).not.toContain(PASSWORD);

    const badMechanism = errorOf(() =>
      loadConfig({
        env: {
          KTRAIL_KAFKA_SASL_MECHANISM: 'gssapi',
          KTRAIL_KAFKA_SASL_USERNAME: 'u',
          KTRAIL_KAFKA_SASL_PASSWORD: PASSWORD,
        },
      }),
    );
    expect(badMechanism.message).toMatch(/kafka\.sasl\.mechanism: .*scram-sha-512/);
    expect(`${badMechanism.message}${JSON.stringify(badMechanism.context)}`).not.toContain(PASSWORD);

    const missing = loadConfig({
      env: {
        KTRAIL_KAFKA_SASL_MECHANISM: 'plain',
        KTRAIL_KAFKA_SASL_USERNAME: 'u',
        KTRAIL_KAFKA_SASL_PASSWORD_FILE: join(dir, 'nope'),
      },
    });
    expect(() => kafkaClientOptions(missing.kafka)).toThrow(
      /kafka\.sasl\.passwordFile: cannot read .*nope: ENOENT/,
    );
    const empty = validateConfig({
      kafka: { sasl: { mechanism: 'plain', username: 'u', passwordFile: file('empty', '\n') } },
    });
    expect(() => kafkaClientOptions(empty.kafka)).toThrow(/kafka\.sasl\.passwordFile: .* is empty/);
  });

  it('takes no secret from the command line, but its file', () => {
    expect(() => loadConfig({ env: {}, overrides: [`kafka.sasl.password=${PASSWORD}`] })).toThrow(
      /--set kafka\.sasl\.password: a secret is not taken from the command line.*KTRAIL_KAFKA_SASL_PASSWORD_FILE/,
    );
    expect(() => loadConfig({ env: {}, overrides: ['clickhouse.password=x'] })).toThrow(
      /clickhouse\.password/,
    );
    const path = file('set-pw', PASSWORD);
    const config = loadConfig({
      env: {},
      overrides: ['kafka.sasl.mechanism=plain', 'kafka.sasl.username=u', `kafka.sasl.passwordFile=${path}`],
    });
    expect(config.kafka.sasl?.password.reveal()).toBe(PASSWORD);
  });
});

describe('clickhouse.password', () => {
  it('comes inline, from KTRAIL_CLICKHOUSE_PASSWORD_FILE, or is empty', () => {
    const base = { KTRAIL_CLICKHOUSE_URL: 'https://ch:8443' };
    const inline = loadConfig({ env: { ...base, KTRAIL_CLICKHOUSE_PASSWORD: PASSWORD } });
    expect(clickHouseConfigFrom(inline.clickhouse)).toMatchObject({ kind: 'server', password: PASSWORD });
    const path = file('ch-pw', `${PASSWORD}\n`);
    const fromFile = loadConfig({ env: { ...base, KTRAIL_CLICKHOUSE_PASSWORD_FILE: path } });
    expect(clickHouseConfigFrom(fromFile.clickhouse)).toMatchObject({ password: PASSWORD });
    expect(clickHouseConfigFrom(loadConfig({ env: base }).clickhouse)).toMatchObject({ password: '' });
  });

  it('is not read by a component that does not use it (the collector shares the config file)', () => {
    const config = loadConfig({ env: { KTRAIL_CLICKHOUSE_PASSWORD_FILE: join(dir, 'not-mounted-here') } });
    expect(config.clickhouse.passwordFile).toBe(join(dir, 'not-mounted-here'));
    expect(() => kafkaClientOptions(config.kafka)).not.toThrow();
  });
});

describe('secrets never show', () => {
  const path = file('shown-pw', PASSWORD);
  const config = loadConfig({
    env: {
      KTRAIL_KAFKA_SASL_MECHANISM: 'scram-sha-256',
      KTRAIL_KAFKA_SASL_USERNAME: 'u',
      KTRAIL_KAFKA_SASL_PASSWORD_FILE: path,
      KTRAIL_CLICKHOUSE_URL: 'https://ch:8443',
      KTRAIL_CLICKHOUSE_PASSWORD: PASSWORD,
    },
  });

  it('in JSON, inspect, String() or the --print-config dump', () => {
    expect(config.kafka.sasl?.password.reveal()).toBe(PASSWORD); // it is there...
    for (const shown of [
      JSON.stringify(config),
      inspect(config, { depth: 10 }),
      String(config.clickhouse.password),
      `${config.kafka.sasl?.password}`,
      printableConfig(config),
    ])
      expect(shown).not.toContain(PASSWORD); // ...and never shown
    const dump = JSON.parse(printableConfig(config));
    expect(dump.kafka.sasl).toEqual({
      mechanism: 'scram-sha-256',
      username: 'u',
      passwordFile: path,
      password: '[secret]',
    });
    expect(dump.clickhouse.password).toBe('[secret]');
  });

  it('in a pino log line of the whole config', () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    pino(sink).info({ config, kafka: kafkaClientOptions(config.kafka).sasl }, 'config');
    expect(out).toContain('[secret]');
    expect(out).not.toContain(PASSWORD);
  });

  it('in URLs: a password there is refused, not echoed', () => {
    const err = errorOf(() =>
      loadConfig({ env: { KTRAIL_CLICKHOUSE_URL: `https://admin:${PASSWORD}@ch:8443` } }),
    );
    expect(err.message).toMatch(/clickhouse\.url: must not hold a password/);
    expect(`${err.message}${JSON.stringify(err.context)}`).not.toContain(PASSWORD);
  });

  it('as a Secret object: no own property holds the value', () => {
    const secret = Secret.inline('x', PASSWORD);
    expect(Object.values(secret)).not.toContain(PASSWORD);
    expect(JSON.stringify({ ...secret })).not.toContain(PASSWORD);
  });
});

describe('kafka TLS settings', () => {
  it('kafka.ssl: true alone is TLS with the system CAs; kafka.tls reads its files', () => {
    expect(kafkaClientOptions(validateConfig({ kafka: { ssl: true } }).kafka).ssl).toBe(true);
    expect(kafkaClientOptions(validateConfig({}).kafka).ssl).toBeUndefined();
    const ca = file('ca.pem', 'CA PEM');
    const cert = file('client.pem', 'CERT PEM');
    const key = file('client.key', 'KEY PEM');
    const config = loadConfig({
      env: {
        KTRAIL_KAFKA_TLS_CA_FILE: ca,
        KTRAIL_KAFKA_TLS_CERT_FILE: cert,
        KTRAIL_KAFKA_TLS_KEY_FILE: key,
        KTRAIL_KAFKA_TLS_SERVERNAME: 'kafka.example',
      },
    });
    const ssl = kafkaClientOptions(config.kafka).ssl as Record<string, unknown>;
    expect(String(ssl.ca)).toBe('CA PEM');
    expect(String(ssl.cert)).toBe('CERT PEM');
    expect(String(ssl.key)).toBe('KEY PEM');
    expect(ssl.servername).toBe('kafka.example');
    expect(ssl.rejectUnauthorized).toBeUndefined(); // Node's default: verify
  });

  it('names the setting for contradictions, half a client certificate and unreadable files', () => {
    expect(() => validateConfig({ kafka: { ssl: false, tls: { caFile: '/ca.pem' } } })).toThrow(
      /kafka\.ssl: is false but kafka\.tls is set/,
    );
    expect(() => validateConfig({ kafka: { tls: { certFile: '/c.pem' } } })).toThrow(
      /kafka\.tls\.keyFile: required/,
    );
    const config = validateConfig({ kafka: { tls: { caFile: join(dir, 'no-ca.pem') } } });
    expect(() => kafkaClientOptions(config.kafka)).toThrow(
      /kafka\.tls\.caFile: cannot read .*no-ca\.pem: ENOENT/,
    );
  });
});
