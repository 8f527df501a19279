// The throttled warning: a flood of one kind of bad input is a few log lines, each saying
// how many it stands for, and other kinds are not held back by it.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createThrottledWarn } from '../../common/log.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('createThrottledWarn', () => {
  it('logs the first of a key, then one per interval with the count held back', () => {
    const { logger, lines } = capture();
    let t = 1_000;
    const warn = createThrottledWarn(logger, 10_000, () => t);
    for (let i = 0; i < 500; i++) warn('malformed', { offset: i }, 'dead letter'); // one burst
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ offset: 0, msg: 'dead letter', level: 40 });
    expect(lines[0]).not.toHaveProperty('suppressed');

    t += 9_999;
    warn('malformed', { offset: 500 }, 'dead letter');
    expect(lines).toHaveLength(1);
    t += 1;
    warn('malformed', { offset: 501 }, 'dead letter');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ offset: 501, suppressed: 500 });

    t += 10_000;
    warn('malformed', { offset: 502 }, 'dead letter'); // nothing held back since: no count
    expect(lines[2]).toMatchObject({ offset: 502 });
    expect(lines[2]).not.toHaveProperty('suppressed');
  });

  it('throttles each key on its own', () => {
    const { logger, lines } = capture();
    const warn = createThrottledWarn(logger, 10_000, () => 0);
    warn('a', {}, 'x');
    warn('a', {}, 'x');
    warn('b', {}, 'y');
    expect(lines.map((l) => l.msg)).toEqual(['x', 'y']);
  });
});
