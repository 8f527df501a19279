// Gate for tests that need a real component (root, eBPF, Docker, Kafka, ClickHouse).
// On a laptop such a test skips and says why; with KTRAIL_REQUIRE_REAL=1 (CI) a missing
// component fails the test instead, so CI can never pass by skipping.
import { it } from 'vitest';

export const requireReal = process.env.KTRAIL_REQUIRE_REAL === '1';

type TestFn = () => unknown;

/**
 * `itReal(missing)(name, fn, timeout?)`: a normal test when `missing` is undefined;
 * otherwise skipped with the reason in its name, or failing with the reason under
 * KTRAIL_REQUIRE_REAL=1.
 */
export function itReal(missing: string | undefined) {
  return (name: string, fn: TestFn, timeout?: number): void => {
    if (missing === undefined) it(name, fn, timeout);
    else if (requireReal)
      it(name, () => {
        throw new Error(`required real component missing: ${missing}`);
      });
    else it.skip(`${name} [skipped: ${missing}]`, fn);
  };
}

/** Undefined when running as root, else the reason a root-only test can't run. */
export function missingRoot(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'needs root';
}

/** Reads a service endpoint handed over by the global setup; a string means "missing: why". */
export function endpointOrReason<T>(value: T | { missing: string }): { value?: T; missing?: string } {
  if (typeof value === 'object' && value !== null && 'missing' in value) return { missing: value.missing };
  return { value: value as T };
}
