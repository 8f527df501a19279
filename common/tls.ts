// What a failed TLS handshake means for the person who configured it: one explanation for
// every TLS client ktrail has (Kafka brokers, a ClickHouse server), naming the peer and the
// setting that fixes it (kafka.tls.caFile, clickhouse.tls.caFile...).

interface ErrorShape {
  code?: unknown;
  message?: string;
  originalError?: unknown;
  cause?: unknown;
}

/** The error and what it wraps (kafkajs: originalError; others: cause), a few levels deep. */
export function errorChain(err: unknown): ErrorShape[] {
  const out: ErrorShape[] = [];
  for (
    let e = err as ErrorShape | undefined;
    e && out.length < 6;
    e = (e.originalError ?? e.cause) as ErrorShape
  )
    out.push(e);
  return out;
}

/** Node's certificate verification failures: the peer's certificate is not trusted. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO)/;

/**
 * A sentence for a TLS failure anywhere in `err`'s chain, else undefined. `peer` names the
 * other side ("Kafka broker 10.0.0.1:9093"), `section` the settings ('kafka.tls').
 */
export function explainTlsError(
  err: unknown,
  peer: string,
  section: 'kafka.tls' | 'clickhouse.tls',
  hasClientCert: boolean,
): string | undefined {
  const errors = errorChain(err);
  const tls = errors.find((e) => typeof e.code === 'string' && TLS_CODE.test(e.code));
  const code = tls?.code as string | undefined;
  const detail = `${code}: ${(tls?.message ?? '').replace(/^Connection error: /, '').split('\n')[0]}`;
  if (code !== undefined && UNTRUSTED.has(code))
    return `${peer}: TLS failed, its certificate is not trusted (${detail}): set ${section}.caFile to the CA that signed it`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return `${peer}: TLS failed, its certificate is not valid now (${detail})`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `${peer}: TLS failed, its certificate does not name this address (${detail}): connect by a name it has${section === 'kafka.tls' ? `, or set ${section}.servername to it` : ''}`;
  if (
    code !== undefined &&
    /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN)/.test(code)
  )
    return hasClientCert
      ? `${peer}: refused our client certificate (${detail}): ${section}.certFile must be signed by a CA it trusts`
      : `${peer}: wants a client certificate, mutual TLS (${detail}): set ${section}.certFile and ${section}.keyFile`;
  const text = errors.map((e) => e.message ?? '').join(' ');
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /before secure TLS connection was established/.test(text))
    return `${peer}: does not speak TLS on this port (${code ?? 'handshake failed'}): use its TLS port, or drop the TLS settings for a plain one`;
  return undefined;
}
