import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';

describe('ClickHouse server TLS settings', () => {
  it('refuses a client certificate without the CA instead of dropping it', async () => {
    const attempt = createClickHouse({
      kind: 'server',
      url: 'https://127.0.0.1:1',
      database: 'x',
      tls: { certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem' },
    });
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(/clickhouse\.tls\.caFile: required with certFile\/keyFile/);
  });
});
