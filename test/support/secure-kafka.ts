// A private Kafka broker with authentication and TLS, for one test file: its own ports and
// data directory (the shared broker's jars), started and stopped by deploy/local/kafka.sh
// with KTRAIL_KAFKA_SECURITY_DIR. Certificates are made here with openssl (a private CA, the
// broker's certificate, a client certificate, and a second CA nobody trusts); users and
// passwords are random per run, so a test can grep logs for them.
//
//   SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)  saslSsl
//   SSL with ssl.client.auth=required (mTLS)        mtls
//   PLAINTEXT, for test plumbing only               plaintext
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../common/repo-root.js';
import { type CertFiles, issueCert, makeCa } from './tls.js';

const run = promisify(execFile);

export interface KafkaUser {
  username: string;
  password: string;
}

export interface SecureBroker {
  plaintext: string[];
  saslSsl: string[];
  mtls: string[];
  /** The CA that signed the broker's and the client's certificates. */
  ca: CertFiles;
  /** A client certificate the mTLS listener accepts. */
  client: CertFiles;
  /** A CA the broker did not use, and a client certificate it signed (trusted by no one). */
  untrustedCa: CertFiles;
  untrustedClient: CertFiles;
  users: { plain: KafkaUser; scram256: KafkaUser; scram512: KafkaUser };
  /** The broker's own log (failed authentications show there). */
  logFile: string;
  stop(): Promise<void>;
}

const sharedCache = process.env.KTRAIL_KAFKA_CACHE ?? join(REPO_ROOT, '.cache/kafka');

/** Why a secure broker can't be started here, or undefined (the shared broker's jars are needed). */
export function secureBrokerMissing(): string | undefined {
  return existsSync(join(sharedCache, 'libs')) ? undefined : `no Kafka jars in ${sharedCache}/libs`;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port with base..base+3 free: client, controller, SASL_SSL, mTLS. */
async function freePorts(): Promise<number> {
  for (let attempt = 0; attempt < 30; attempt++) {
    const base = 41_000 + 4 * Math.floor(Math.random() * 4_000);
    const ok = await Promise.all([0, 1, 2, 3].map((i) => canListen(base + i)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no four free ports for the secure broker');
}

const user = (name: string): KafkaUser => ({
  username: `${name}-${randomBytes(2).toString('hex')}`,
  password: `pw-${randomBytes(12).toString('hex')}`,
});

export async function startSecureBroker(work: string): Promise<SecureBroker> {
  const pki = join(work, 'pki');
  const security = join(work, 'kafka-security');
  mkdirSync(security, { recursive: true });
  const ca = await makeCa(pki, 'ktrail-test-ca');
  const broker = await issueCert(ca, pki, 'broker');
  const client = await issueCert(ca, pki, 'client', { client: true });
  const untrustedCa = await makeCa(pki, 'untrusted-ca');
  const untrustedClient = await issueCert(untrustedCa, pki, 'untrusted-client', { client: true });
  copyFileSync(ca.cert, join(security, 'ca.pem'));
  copyFileSync(broker.cert, join(security, 'broker.pem'));
  copyFileSync(broker.key, join(security, 'broker.key'));
  const users = { plain: user('plain'), scram256: user('scram256'), scram512: user('scram512') };
  const secret = { mode: 0o600 };
  writeFileSync(join(security, 'plain-users'), `${users.plain.username} ${users.plain.password}\n`, secret);
  writeFileSync(
    join(security, 'scram-users'),
    `SCRAM-SHA-256 ${users.scram256.username} ${users.scram256.password}\n` +
      `SCRAM-SHA-512 ${users.scram512.username} ${users.scram512.password}\n`,
    secret,
  );

  // Own cache dir: the shared jars and class-data-sharing archive, own data.
  const cache = join(work, 'kafka');
  mkdirSync(cache, { recursive: true });
  symlinkSync(join(sharedCache, 'libs'), join(cache, 'libs'));
  const cds = existsSync(join(sharedCache, 'cds'));
  if (cds) symlinkSync(join(sharedCache, 'cds'), join(cache, 'cds'));
  const port = await freePorts();
  const env = {
    ...process.env,
    KTRAIL_KAFKA_CACHE: cache,
    KTRAIL_KAFKA_PORT: String(port),
    KTRAIL_KAFKA_CONTROLLER_PORT: String(port + 1),
    KTRAIL_KAFKA_SASL_SSL_PORT: String(port + 2),
    KTRAIL_KAFKA_MTLS_PORT: String(port + 3),
    KTRAIL_KAFKA_SECURITY_DIR: security,
    KTRAIL_KAFKA_HEAP: '256m',
    // Without the shared archive, don't record one (a throwaway broker on other ports).
    ...(cds ? {} : { KTRAIL_KAFKA_CDS: '0' }),
  };
  const kafkaSh = async (args: string[]) => {
    try {
      await run(join(REPO_ROOT, 'deploy/local/kafka.sh'), args, { env, timeout: 240_000 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(
        `kafka.sh ${args.join(' ')}: ${`${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message}`,
      );
    }
  };
  await kafkaSh(['start', '--brokers', '1']);
  const at = (p: number) => [`127.0.0.1:${p}`];
  return {
    plaintext: at(port),
    saslSsl: at(port + 2),
    mtls: at(port + 3),
    ca,
    client,
    untrustedCa,
    untrustedClient,
    users,
    logFile: join(cache, 'data-single-1', 'broker.log'),
    stop: () => kafkaSh(['stop', '--brokers', '1']),
  };
}
