import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fixKafkajsIdleTimer } from '../../common/kafka.js';

interface Queue {
  requestTimeoutIntervalId: NodeJS.Timeout | null | undefined;
  scheduleRequestTimeoutCheck(): void;
  push(request: unknown): void;
  fulfillRequest(response: { correlationId: number; payload: Buffer | null; size: number }): void;
  destroy(): void;
}

const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as new (
  options: object,
) => Queue;
const logger = { debug() {}, info() {}, warn() {}, error() {} };

function queue(connected = () => true): Queue {
  fixKafkajsIdleTimer();
  const q = new RequestQueue({
    maxInFlightRequests: 1,
    requestTimeout: 1_000,
    enforceRequestTimeout: true,
    clientId: 'test',
    broker: 'b:1',
    logger,
    isConnected: connected,
  });
  q.scheduleRequestTimeoutCheck(); // what a connection does on connect
  return q;
}

/** A request that is sent and then waits for its answer; `result` says how it ended. */
function request(q: Queue, correlationId: number) {
  const result = { value: 'pending' as string };
  q.push({
    entry: {
      apiKey: 0,
      apiName: 'Produce',
      apiVersion: 3,
      correlationId,
      resolve: () => {
        result.value = 'answered';
      },
      reject: (e: Error) => {
        result.value = e.name;
      },
    },
    expectResponse: true,
    sendRequest: () => {},
  });
  return result;
}

describe("kafkajs' request-timeout check", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs no timer on a connection with nothing in flight', () => {
    const q = queue();
    expect(vi.getTimerCount()).toBe(0);
    const answered = request(q, 1);
    expect(vi.getTimerCount()).toBe(1);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(answered.value).toBe('answered');
    vi.advanceTimersByTime(100); // the check finds nothing in flight and stops
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(q.requestTimeoutIntervalId ?? null).toBeNull();
  });

  it('still times out a request that gets no answer, then stops', () => {
    const q = queue();
    const unanswered = request(q, 1);
    vi.advanceTimersByTime(900);
    expect(unanswered.value).toBe('pending');
    vi.advanceTimersByTime(200);
    expect(unanswered.value).toBe('KafkaJSRequestTimeoutError');
    vi.advanceTimersByTime(100);
    expect(vi.getTimerCount()).toBe(0);
    // The next request starts the checks again.
    const next = request(q, 2);
    vi.advanceTimersByTime(1_200);
    expect(next.value).toBe('KafkaJSRequestTimeoutError');
  });

  it('stops with the connection, in flight or not', () => {
    let connected = true;
    const q = queue(() => connected);
    request(q, 1);
    connected = false;
    vi.advanceTimersByTime(100);
    expect(vi.getTimerCount()).toBe(0);
  });
});
