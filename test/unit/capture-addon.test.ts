// The addon wrapper's failure paths need no root: a missing build must be named, with the fix.
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

async function wrapperWithAddonAt(path: string) {
  vi.stubEnv('KTRAIL_NATIVE_ADDON', path);
  vi.resetModules();
  return import('../../collector/src/kernel/addon.js');
}

describe('native addon wrapper', () => {
  it('names the missing addon and how to build it', async () => {
    const addon = await wrapperWithAddonAt('/nonexistent/ktrail_native.node');
    expect(addon.addonPath).toBe('/nonexistent/ktrail_native.node');
    // The module graph was reset, so compare by name rather than by class identity.
    expect(() => addon.loadAddon()).toThrow(expect.objectContaining({ name: 'KtrailError' }));
    expect(() => addon.loadAddon()).toThrow(
      /\/nonexistent\/ktrail_native\.node is missing; run `npm run build:native`/,
    );
  });

  it('says why kernel capture cannot open before touching the kernel', async () => {
    const addon = await wrapperWithAddonAt('/nonexistent/ktrail_native.node');
    const reason = addon.missingKernelCapture();
    expect(reason).toMatch(/needs CAP_|no BTF|not built/);
    expect(() =>
      addon.openCapture(
        { objects: ['/nonexistent.bpf.o'], ringBufferBytes: 4096, batchMaxBytes: 4096, batchMaxMs: 10 },
        () => {},
      ),
    ).toThrow(/cannot open kernel capture/);
  });
});
