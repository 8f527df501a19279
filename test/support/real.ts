// Gate for tests that need a real component (root, eBPF, Docker, Kafka, ClickHouse).
// Nothing is ever skipped: a missing component fails the test with the reason and how to
// get it (./ktrail test installs and starts everything), so no run passes by skipping.
import { it } from 'vitest';

type TestFn = () => unknown;

/**
 * `itReal(missing)(name, fn, timeout?)`: a normal test when `missing` is undefined; otherwise
 * a test that fails with the reason.
 */
export function itReal(missing: string | undefined) {
  return (name: string, fn: TestFn, timeout?: number): void => {
    if (missing === undefined) it(name, fn, timeout);
    else
      it(name, () => {
        throw new Error(`required real component missing: ${missing} (./ktrail test sets everything up)`);
      });
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
