// kafkajs' log lines through ktrail's pino: a failed attempt of a request (Connection) is a
// warning, and a burst of the same retriable error (a broker electing its leaders) is one
// line, not one per request; other errors stay errors, every one.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../common/kafka.js';

describe('kafkajs logs', () => {
  it('turns per-attempt Connection errors into throttled warnings, expected states into debug', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const kafka = createKafka({ brokers: ['127.0.0.1:1'], clientId: 't' }, logger);
    const connection = kafka.logger().namespace('Connection');
    for (let i = 0; i < 15; i++)
      connection.error('Response Produce(key: 0, version: 7)', {
        error: 'This server is not the leader for that topic-partition',
        correlationId: i,
      });
    for (let i = 0; i < 15; i++)
      connection.error('Connection error: connect ECONNREFUSED', { error: 'connect ECONNREFUSED' });
    kafka.logger().namespace('Consumer').error('Crash: the group coordinator is not available', {});
    kafka.logger().namespace('Consumer').error('Crash: the group coordinator is not available', {});

    kafka
      .logger()
      .namespace('Producer')
      .warn('Limiting retries for the idempotent producer may invalidate EoS guarantees');
    kafka.logger().namespace('Connection').error('Response JoinGroup(key: 11, version: 5)', {
      error: "The coordinator is loading and hence can't process requests",
    });
    kafka.logger().namespace('Connection').error('Response DescribeGroups(key: 15, version: 2)', {
      error: 'This is not the correct coordinator for this group',
    });

    const byMsg = lines.map((l) => [l.level, l.msg, l.error]);
    // A leader election, a loading coordinator and the idempotence note are expected states:
    // debug, not shown at info. The refused connection is a warning, a crash an error.
    expect(byMsg).toEqual([
      [40, 'Connection error: connect ECONNREFUSED', 'connect ECONNREFUSED'],
      [50, 'Crash: the group coordinator is not available', undefined],
      [50, 'Crash: the group coordinator is not available', undefined],
    ]);
  });
});
