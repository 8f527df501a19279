// The supported Node (24, pinned in deploy/local/node.sh) is what runs the tests, the two
// addons were compiled against its headers and load in it, and chDB loads and answers in it.
// Run through ./ktrail test, which puts .cache/node/bin first on PATH.
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../../collector/src/kernel/addon.js';
import { loadCodecAddon } from '../../common/native-codec.js';
import { REPO_ROOT } from '../../common/repo-root.js';

const pinned = execFileSync('bash', [join(REPO_ROOT, 'deploy/local/node.sh'), 'version'], {
  encoding: 'utf8',
}).trim();

describe('Node runtime', () => {
  it('runs on the pinned Node 24', () => {
    expect(pinned).toMatch(/^24\.\d+\.\d+$/);
    expect(process.versions.node, `${process.execPath} is not ktrail's Node: use ./ktrail test`).toBe(pinned);
  });

  it("built the addons against the running Node's headers (node-gyp --nodedir)", () => {
    // node-gyp records the headers it compiled against; nothing else may win (an npmrc's nodedir).
    const gypi = readFileSync(join(REPO_ROOT, 'native/build/config.gypi'), 'utf8');
    const nodedir = /"nodedir": "([^"]+)"/.exec(gypi)?.[1];
    expect(nodedir).toBeDefined();
    expect(realpathSync(nodedir!)).toBe(realpathSync(dirname(dirname(process.execPath))));
    const header = readFileSync(join(nodedir!, 'include/node/node_version.h'), 'utf8');
    const part = (name: string) => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(header)?.[1];
    expect([part('MAJOR'), part('MINOR'), part('PATCH')].join('.')).toBe(process.versions.node);
  });

  it('loads both addons and they work', () => {
    const codec = loadCodecAddon();
    // CRC-32C check value of "123456789" (RFC 3720).
    expect(codec.crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(typeof loadAddon().Capture).toBe('function');
  });

  it('loads chDB, which answers a query, in the same Node', () => {
    const code = `const { query } = require('chdb');
      console.log(JSON.stringify({ node: process.versions.node, clickhouse: query('SELECT version()', 'TSV').trim() }));`;
    const out = execFileSync(process.execPath, ['-e', code], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const { node, clickhouse } = JSON.parse(out) as { node: string; clickhouse: string };
    expect(node).toBe(process.versions.node);
    expect(clickhouse).toMatch(/^2[6-9]\.\d+\./);
  });
});
