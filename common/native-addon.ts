// ktrail's Node addons, both built by `npm run build:native` into native/build/Release: the
// eBPF one (collector/src/kernel/addon.ts) and the codec one (common/native-codec.ts). Found
// from the checkout's root (sources and dist/ alike), overridable by an environment variable,
// and loaded with an error that says how to build a missing one.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { KtrailError } from './errors.js';
import { REPO_ROOT } from './repo-root.js';

/** `$envVar` if set, else `file` where `npm run build:native` puts it. */
export function nativeAddonPath(envVar: string, file: string): string {
  return process.env[envVar] ?? resolve(REPO_ROOT, 'native/build/Release', file);
}

/** Loads the addon at `path`; a missing file is a KtrailError naming it and the build command. */
export function requireNativeAddon<T>(path: string, what: string): T {
  if (!existsSync(path))
    throw new KtrailError(`${what} not built: ${path} is missing; run \`npm run build:native\``, {
      context: { path },
    });
  return createRequire(import.meta.url)(path) as T;
}
