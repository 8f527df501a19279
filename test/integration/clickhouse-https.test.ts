// ClickHouse over HTTPS with a private CA and a password file, against a real server
// (Debian's clickhouse-server 18.16, a private instance: own ports, a certificate made
// here). Configured as the processor is (KTRAIL_CLICKHOUSE_* -> clickHouseConfigFrom):
// connect and insert work; an untrusted CA or a wrong password fails with an error naming
// the server, the user and the setting, never the password. The processor CLI on the same
// settings gets through TLS and authentication to the (expected) refusal of a server this
// old, and prints no password.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { loadConfig } from '../../common/config.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import {
  type ClickHouseConfig,
  clickHouseConfigFrom,
  createClickHouse,
  describeClickHouse,
} from '../../processor/src/clickhouse/client.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { type PrivateServer, startPrivateClickHouseServer, uniqueName } from '../support/clickhouse.js';
import { itReal } from '../support/real.js';

const work = mkdtempSync(join(tmpdir(), 'ktrail-ch-https-'));
let server: PrivateServer | undefined;
let missing: string | undefined;
const database = uniqueName('https');

beforeAll(async () => {
  try {
    server = await startPrivateClickHouseServer(work);
  } catch (err) {
    missing = `clickhouse-server unavailable: ${(err as Error).message}`;
  }
}, 240_000);

afterAll(async () => {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

const passwordFile = (name: string, text: string): string => {
  const path = join(work, name);
  writeFileSync(path, `${text}\n`, { mode: 0o600 });
  return path;
};

/** The processor's path from settings to client config; 18.16 has no dedup tokens. */
function serverConfig(env: NodeJS.ProcessEnv): ClickHouseConfig {
  const config = clickHouseConfigFrom(
    loadConfig({ env: { KTRAIL_CLICKHOUSE_DATABASE: database, ...env } }).clickhouse,
  );
  return { ...config, allowWithoutDedupToken: true } as ClickHouseConfig;
}

function settings(over: Record<string, string> = {}): Record<string, string> {
  const s = server as PrivateServer;
  return {
    KTRAIL_CLICKHOUSE_URL: s.httpsUrl,
    KTRAIL_CLICKHOUSE_USERNAME: s.user.username,
    KTRAIL_CLICKHOUSE_PASSWORD_FILE: passwordFile('ch.pw', s.user.password),
    KTRAIL_CLICKHOUSE_TLS_CA_FILE: s.caFile,
    ...over,
  };
}

describe('ClickHouse over HTTPS with a private CA (real clickhouse-server)', () => {
  itReal(missing)('connects with the CA and a password file, and inserts', async () => {
    const client = await createClickHouse(serverConfig(settings()));
    try {
      expect(describeClickHouse(client)).toMatchObject({ kind: 'server', version: '18.16.1' });
      await client.command({
        query: `CREATE TABLE ${database}.t (id UInt64, node String) ENGINE = MergeTree ORDER BY id`,
      });
      const rows = Array.from({ length: 500 }, (_, i) => ({ id: i, node: 'https' }));
      expect(await insertBatch(client, { table: 't', rows, dedupToken: 't:0:0-499' })).toMatchObject({
        rows: 500,
      });
      const rs = await client.query({
        query: `SELECT count() AS n FROM ${database}.t`,
        format: 'JSONEachRow',
      });
      expect(await rs.json()).toEqual([{ n: '500' }]);
    } finally {
      await client.close();
    }
  });

  itReal(missing)('an untrusted CA, or the system CAs, fail naming clickhouse.tls.caFile', async () => {
    const url = (server as PrivateServer).httpsUrl;
    for (const env of [
      settings({ KTRAIL_CLICKHOUSE_TLS_CA_FILE: (server as PrivateServer).untrustedCaFile }),
      { ...settings(), KTRAIL_CLICKHOUSE_TLS_CA_FILE: '' },
    ]) {
      const err = (await createClickHouse(serverConfig(env)).catch((e) => e)) as Error;
      expect(err.message).toMatch(
        new RegExp(
          `^ClickHouse ${url}/: TLS failed, its certificate is not trusted \\(\\w+: .*clickhouse\\.tls\\.caFile`,
        ),
      );
      expect(err.message).not.toContain((server as PrivateServer).user.password);
    }
  });

  itReal(missing)('a wrong password names the user and the setting, not the password', async () => {
    const wrong = `wrong-${Date.now().toString(36)}`;
    const err = (await createClickHouse(
      serverConfig(settings({ KTRAIL_CLICKHOUSE_PASSWORD_FILE: passwordFile('wrong.pw', wrong) })),
    ).catch((e) => e)) as Error;
    expect(err.message).toMatch(
      /authentication failed for user "ktrail" \(Code: 193.*Wrong password.*clickhouse\.passwordFile/,
    );
    expect(err.message).not.toContain(wrong);
  });

  itReal(missing)(
    'the processor CLI gets through TLS and the password file, and prints no password',
    async () => {
      const run = async (env: Record<string, string>) => {
        const inherited: NodeJS.ProcessEnv = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KTRAIL_')) inherited[k] = v;
        const child = spawn(process.execPath, ['--import', 'tsx', 'processor/src/cli.ts', '--migrate-only'], {
          cwd: REPO_ROOT,
          env: { ...inherited, KTRAIL_LOG_LEVEL: 'debug', KTRAIL_CLICKHOUSE_DATABASE: database, ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
        return { code, out };
      };
      // Reached the server, logged in, asked its settings: refused only for its age (2018).
      const ok = await run(settings());
      expect(ok.out).toMatch(
        /ClickHouse 18\.16\.1 at https:\/\/127\.0\.0\.1:\d+\/ lacks insert_deduplication_token/,
      );
      expect(ok.code).toBe(2);
      const untrusted = await run(
        settings({ KTRAIL_CLICKHOUSE_TLS_CA_FILE: (server as PrivateServer).untrustedCaFile }),
      );
      expect(untrusted.code).toBe(1);
      expect(untrusted.out).toMatch(/certificate is not trusted[^"]*clickhouse\.tls\.caFile/);
      for (const out of [ok.out, untrusted.out])
        expect(out).not.toContain((server as PrivateServer).user.password);
    },
    60_000,
  );
});
