// Certificates for TLS tests, made with the openssl command line in a test's own directory:
// a private CA, and certificates it signs for a server (IP 127.0.0.1, localhost) or a
// client (mutual TLS). Keys are unencrypted PKCS#8 PEM, which both Node and Kafka 4 read.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertFiles {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8, unencrypted, mode 0600). */
  key: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

/** A self-signed CA named `name` in dir/<name>.pem and dir/<name>.key. */
export async function makeCa(dir: string, name: string): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    files.key,
    '-out',
    files.cert,
  ]);
  return files;
}

/**
 * A certificate for `name` signed by `ca`: a server's (SAN IP:127.0.0.1 and DNS:localhost
 * unless `san` says otherwise) or a client's (`client: true`, no SAN needed); `subject`
 * replaces /CN=<name> (a Kubernetes client names its groups as O=...).
 */
export async function issueCert(
  ca: CertFiles,
  dir: string,
  name: string,
  options: { client?: boolean; san?: string; subject?: string } = {},
): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    options.subject ?? `/CN=${name}`,
    '-keyout',
    files.key,
    '-out',
    csr,
  ]);
  writeFileSync(
    ext,
    options.client
      ? 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
      : `extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${options.san ?? 'IP:127.0.0.1,DNS:localhost'}\n`,
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    files.cert,
  ]);
  return files;
}
