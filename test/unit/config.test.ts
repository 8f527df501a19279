import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeSettings, envNameFor, loadConfig } from '../../common/config.js';
import { ConfigError } from '../../common/errors.js';

describe('config', () => {
  it('merges defaults < file < env < --set', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-config-'));
    const file = join(dir, 'ktrail.yaml');
    writeFileSync(file, 'kafka:\n  brokers: [f:1]\n  partitions: 3\ncollector:\n  batchMaxEvents: 10\n');
    const config = loadConfig({
      file,
      env: { KTRAIL_KAFKA_PARTITIONS: '12', KTRAIL_COLLECTOR_BATCH_MAX_EVENTS: '20' },
      overrides: ['collector.batchMaxEvents=30', 'node=n1'],
    });
    expect(config.kafka.brokers).toEqual(['f:1']);
    expect(config.kafka.partitions).toBe(12);
    expect(config.collector.batchMaxEvents).toBe(30);
    expect(config.node).toBe('n1');
    expect(config.clickhouse.ttlRawDays).toBe(14);
  });

  it('splits comma-separated brokers from the environment', () => {
    expect(loadConfig({ env: { KTRAIL_KAFKA_BROKERS: 'a:1, b:2' } }).kafka.brokers).toEqual(['a:1', 'b:2']);
  });

  it('names every bad setting and what it accepts', () => {
    let error: unknown;
    try {
      loadConfig({
        env: {
          KTRAIL_LOG_LEVEL: 'loud',
          KTRAIL_COLLECTOR_RING_BUFFER_BYTES: '5000',
          KTRAIL_COLLECTOR_BATCH_MAX_BYTES: '2000000',
        },
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain('log.level');
    expect(message).toContain('"debug"');
    expect(message).toContain('collector.ringBufferBytes: must be a power of two');
    expect(message).toContain('collector.batchMaxBytes: must be <= 995904');
  });

  it('refuses a heartbeat interval that is not below the session timeout', () => {
    const ok = loadConfig({ env: { KTRAIL_PROCESSOR_SESSION_TIMEOUT_MS: '6000' } });
    expect(ok.processor.heartbeatIntervalMs).toBeLessThan(ok.processor.sessionTimeoutMs);
    expect(() =>
      loadConfig({
        env: {},
        overrides: ['processor.sessionTimeoutMs=6000', 'processor.heartbeatIntervalMs=6000'],
      }),
    ).toThrow(/processor\.heartbeatIntervalMs: must be below processor\.sessionTimeoutMs \(6000\)/);
  });

  it('rejects unknown settings in files and flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-config-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ kafka: { brokerz: ['x'] } }));
    expect(() => loadConfig({ file, env: {} })).toThrow(/unknown setting\(s\) brokerz/);
    expect(() => loadConfig({ env: {}, overrides: ['kafka.nope=1'] })).toThrow(
      /--set kafka.nope: unknown setting/,
    );
    expect(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} })).toThrow(/cannot read config file/);
  });

  it('documents every setting with its environment variable', () => {
    const settings = describeSettings();
    expect(settings.find((s) => s.setting === 'collector.batchMaxEvents')?.env).toBe(
      'KTRAIL_COLLECTOR_BATCH_MAX_EVENTS',
    );
    expect(envNameFor('clickhouse.ttlRawDays')).toBe('KTRAIL_CLICKHOUSE_TTL_RAW_DAYS');
    for (const s of settings) expect(s.env).toMatch(/^KTRAIL_[A-Z0-9_]+$/);
  });
});
