// Keeps package-lock.json acceptable to `npm ci`. chdb lists one optional package per
// platform (@chdb/lib-<os>-<cpu>[-<libc>]); the registry these machines use serves only
// linux-x64, so `npm install` records no entry for the others, and `npm ci` refuses a lock in
// which an optional dependency has no entry. An entry with the version, "optional" and the
// platform (no resolved, no integrity) satisfies it, and npm never fetches it on linux-x64.
// Node 24 runs it as it is (no node_modules needed):
//   node deploy/local/lock-platforms.ts           add the missing entries
//   node deploy/local/lock-platforms.ts --check   exit 1 if any is missing
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type LockEntry = {
  version?: string;
  optional?: boolean;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
};
export type Lockfile = { lockfileVersion?: number; packages: Record<string, LockEntry> };
export type MissingEntry = { parent: string; name: string; version: string };

export const FIX_COMMAND = 'node deploy/local/lock-platforms.ts';

/** The lock key Node's resolution would find `name` at, seen from the package at `from`. */
function resolves(lock: Lockfile, from: string, name: string): boolean {
  let base = from;
  for (;;) {
    if (lock.packages[`${base === '' ? '' : `${base}/`}node_modules/${name}`] !== undefined) return true;
    if (base === '') return false;
    const up = base.lastIndexOf('/node_modules/');
    base = up >= 0 ? base.slice(0, up) : '';
  }
}

/** Every optional dependency, of any package in the lock, that has no entry of its own. */
export function missingOptionalEntries(lock: Lockfile): MissingEntry[] {
  const missing: MissingEntry[] = [];
  for (const [parent, entry] of Object.entries(lock.packages)) {
    for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
      if (!resolves(lock, parent, name)) missing.push({ parent, name, version });
    }
  }
  return missing;
}

const LIBC: Record<string, string> = { gnu: 'glibc', musl: 'musl' };

/** os, cpu and libc of a chdb platform package, from its name (chdb's own loader maps them so). */
export function chdbPlatform(name: string): { os: string[]; cpu: string[]; libc?: string[] } {
  const m = /^@chdb\/lib-([a-z0-9]+)-([a-z0-9]+)(?:-([a-z]+))?$/.exec(name);
  const libc = m?.[3] === undefined ? undefined : LIBC[m[3]];
  if (!m || (m[3] !== undefined && libc === undefined)) {
    throw new Error(`${name} is not a chdb platform package (@chdb/lib-<os>-<cpu>[-gnu|-musl])`);
  }
  return { os: [m[1]!], cpu: [m[2]!], ...(libc === undefined ? {} : { libc: [libc] }) };
}

/** The lock with an entry for every missing chdb platform package; other missing ones throw. */
export function addPlatformEntries(lock: Lockfile): { lock: Lockfile; added: string[] } {
  const packages = { ...lock.packages };
  const added: string[] = [];
  for (const m of missingOptionalEntries(lock)) {
    if (!m.name.startsWith('@chdb/lib-')) {
      throw new Error(`${m.parent} lists the optional ${m.name}@${m.version}, which has no lock entry`);
    }
    const { os, cpu, libc } = chdbPlatform(m.name);
    // npm's own key order (version, then the rest sorted), so its next write leaves them as they are.
    packages[`node_modules/${m.name}`] = {
      version: m.version,
      cpu,
      ...(libc ? { libc } : {}),
      optional: true,
      os,
    };
    added.push(`${m.name}@${m.version}`);
  }
  // npm writes the keys sorted; keep to it so its next write is a small diff.
  const [root, ...rest] = Object.keys(packages);
  const keys = [root!, ...rest.sort((a, b) => a.localeCompare(b, 'en'))];
  return { lock: { ...lock, packages: Object.fromEntries(keys.map((k) => [k, packages[k]!])) }, added };
}

function main(): void {
  const file = fileURLToPath(new URL('../../package-lock.json', import.meta.url));
  const lock = JSON.parse(readFileSync(file, 'utf8')) as Lockfile;
  const missing = missingOptionalEntries(lock);
  if (process.argv.includes('--check')) {
    for (const m of missing)
      console.error(`missing lock entry: ${m.name}@${m.version} (optional in ${m.parent})`);
    if (missing.length > 0) console.error(`fix: ${FIX_COMMAND}`);
    process.exit(missing.length > 0 ? 1 : 0);
  }
  const { lock: fixed, added } = addPlatformEntries(lock);
  if (added.length === 0) {
    console.log('package-lock.json: every optional dependency has an entry');
    return;
  }
  writeFileSync(file, `${JSON.stringify(fixed, null, 2)}\n`);
  console.log(`package-lock.json: added ${added.join(', ')}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main();
