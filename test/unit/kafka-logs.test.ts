// kafkajs' log lines through ktrail's pino: a failed attempt of a request (Connection) is a
// warning, and a burst of the same retriable error (a broker electing its leaders) is one
// line, not one per request; other errors stay errors, every one.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../common/kafka.js';

describe('kafkajs logs', () => {
  it('turns per-attempt Connection errors into throttled warnings', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const kafka = createKafka({ brokers: ['127.0.0.1:1'], clientId: 't' }, logger);
    const connection = kafka.logger().namespace('Connection');
    for (let i = 0; i < 15; i++)
      connection.error('Response Produce(key: 0, version: 7)', {
        error: 'This server is not the leader for that topic-partition',
        correlationId: i,
      });
    connection.error('Connection error: connect ECONNREFUSED', { error: 'connect ECONNREFUSED' });
    kafka.logger().namespace('Consumer').error('Crash: the group coordinator is not available', {});
    kafka.logger().namespace('Consumer').error('Crash: the group coordinator is not available', {});

    const byMsg = lines.map((l) => [l.level, l.msg, l.error]);
    expect(byMsg).toEqual([
      [40, 'Response Produce(key: 0, version: 7)', 'This server is not the leader for that topic-partition'],
      [40, 'Connection error: connect ECONNREFUSED', 'connect ECONNREFUSED'],
      [50, 'Crash: the group coordinator is not available', undefined],
      [50, 'Crash: the group coordinator is not available', undefined],
    ]);
  });
});
