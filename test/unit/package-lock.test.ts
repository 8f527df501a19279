// `npm ci` accepts package-lock.json only if every optional dependency has an entry. chdb's
// other-platform packages get none from `npm install` on these machines (the registry does not
// serve them), so the lock carries entries made by deploy/local/lock-platforms.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  addPlatformEntries,
  chdbPlatform,
  FIX_COMMAND,
  type Lockfile,
  missingOptionalEntries,
} from '../../deploy/local/lock-platforms.js';

const read = <T>(path: string): T => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as T;
const lock = read<Lockfile>('../../package-lock.json');
const chdb = read<{ optionalDependencies: Record<string, string> }>('../../node_modules/chdb/package.json');

describe('package-lock.json', () => {
  it('has an entry for every optional dependency of every package (npm ci refuses it otherwise)', () => {
    const missing = missingOptionalEntries(lock).map((m) => `${m.name}@${m.version}`);
    expect(missing, `restore them with: ${FIX_COMMAND}`).toEqual([]);
  });

  it("has an entry for each of installed chdb's platform packages, with its version and platform", () => {
    const names = Object.keys(chdb.optionalDependencies);
    expect(names.length).toBeGreaterThanOrEqual(4);
    for (const name of names) {
      const entry = lock.packages[`node_modules/${name}`];
      expect(entry, `${name}: restore with ${FIX_COMMAND}`).toBeDefined();
      expect(entry?.version).toBe(chdb.optionalDependencies[name]);
      expect(entry?.optional).toBe(true);
      expect({ os: entry?.os, cpu: entry?.cpu, libc: entry?.libc }).toEqual({
        libc: undefined,
        ...chdbPlatform(name),
      });
    }
  });

  it('holds no ssh2 or cpu-features (dockerode brought them; nothing here uses them)', () => {
    const unused = Object.keys(lock.packages).filter((k) => /(^|\/)(ssh2|cpu-features|dockerode)$/.test(k));
    expect(unused).toEqual([]);
  });
});

describe('lock-platforms', () => {
  it('restores exactly the entries an `npm install` here drops', () => {
    const dropped = Object.keys(lock.packages).filter(
      (k) => k.startsWith('node_modules/@chdb/lib-') && lock.packages[k]?.integrity === undefined,
    );
    expect(dropped.length).toBeGreaterThanOrEqual(3);
    const packages = { ...lock.packages };
    for (const k of dropped) delete packages[k];
    const broken: Lockfile = { ...lock, packages };
    expect(missingOptionalEntries(broken).map((m) => `node_modules/${m.name}`)).toEqual(dropped);

    const { lock: fixed, added } = addPlatformEntries(broken);
    expect(added).toHaveLength(dropped.length);
    // Same entries, same key order: the committed lock is what the script writes.
    expect(JSON.stringify(fixed)).toBe(JSON.stringify(lock));
  });

  it('leaves a complete lock as it is', () => {
    const { lock: same, added } = addPlatformEntries(lock);
    expect(added).toEqual([]);
    expect(JSON.stringify(same)).toBe(JSON.stringify(lock));
  });

  it("refuses a missing optional dependency that is not chdb's (its platform is unknown)", () => {
    const broken: Lockfile = {
      ...lock,
      packages: {
        ...lock.packages,
        'node_modules/x': { version: '1.0.0', optionalDependencies: { y: '2.0.0' } },
      },
    };
    expect(() => addPlatformEntries(broken)).toThrow('node_modules/x lists the optional y@2.0.0');
  });

  it.each([
    ['@chdb/lib-darwin-arm64', { os: ['darwin'], cpu: ['arm64'] }],
    ['@chdb/lib-darwin-x64', { os: ['darwin'], cpu: ['x64'] }],
    ['@chdb/lib-linux-arm64-gnu', { os: ['linux'], cpu: ['arm64'], libc: ['glibc'] }],
    ['@chdb/lib-linux-x64-musl', { os: ['linux'], cpu: ['x64'], libc: ['musl'] }],
  ])('%s -> its platform', (name, platform) => {
    expect(chdbPlatform(name)).toEqual(platform);
  });

  it.each(['@chdb/lib-linux-x64-uclibc', '@chdb/other', 'chdb-lib-linux-x64'])('%s is refused', (name) => {
    expect(() => chdbPlatform(name)).toThrow('is not a chdb platform package');
  });
});
