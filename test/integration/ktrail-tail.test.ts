// `./ktrail tail` on the real broker: each topic's messages come out as JSON lines decoded
// with their schema (bigints as text), a message it can't decode as a line naming the error,
// and a topic role it doesn't know as a usage error.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import avsc from 'avsc';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { topicNames } from '../../common/kafka-topics.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { sampleEvents } from '../../schemas/samples.js';
import { createTopics, deleteTopics, quietKafka } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const kafka = endpointOrReason(inject('kafka'));
const prefix = `tail-${Date.now().toString(36)}.`;
const names = topicNames(prefix);
const codec = createProcessorCodec();

/** Runs `ktrail tail` against the test's topics; `lines` parses stdout as JSON lines. */
function tail(args: string[]): Promise<{
  code: number | null;
  stdout: string;
  stderr: string;
  readonly lines: Record<string, unknown>[];
}> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'deploy/local/tail.ts', ...args], {
    cwd: repo,
    env: {
      ...process.env,
      KTRAIL_KAFKA_BROKERS: kafka.value?.brokers.join(',') ?? '',
      KTRAIL_KAFKA_TOPIC_PREFIX: prefix,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) =>
    child.once('exit', (code) =>
      resolve({
        code,
        stdout,
        stderr,
        get lines() {
          return stdout
            .split('\n')
            .filter((l) => l.startsWith('{'))
            .map((l) => JSON.parse(l) as Record<string, unknown>);
        },
      }),
    ),
  );
}

describe('ktrail tail', () => {
  beforeAll(async () => {
    if (!kafka.value) return;
    await createTopics(
      kafka.value,
      [names.eventsEnriched, names.alerts, names.deadletter].map((topic) => ({ topic, partitions: 1 })),
    );
    const exit = sampleEvents().find((e) => e.kind === 'proc_exit')!;
    const producer = quietKafka(kafka.value.brokers, 'tail-test').producer();
    await producer.connect();
    await producer.send({
      topic: names.eventsEnriched,
      messages: [
        {
          key: 'node-1',
          value: codec.encodeEnriched({
            node: 'node-1',
            sourcePartition: 0,
            firstOffset: 7n,
            lastOffset: 9n,
            firstEvent: 0,
            containers: [
              {
                containerId: 'c1',
                containerName: 'web',
                image: 'nginx:1',
                pod: 'web-0',
                namespace: 'prod',
                workload: 'prod/web',
                containerRuntime: 'containerd',
                podUid: '9a1c4e2b-0d3f-4a6e-8b7c-5e2f1a9d3c40',
                k8sContainerName: 'web',
                workloadKind: 'StatefulSet',
                workloadName: 'web',
                composeProject: '',
                composeService: '',
                containerdNamespace: 'k8s.io',
              },
            ],
            events: [
              { timeNs: 1_764_000_000_000_000_001n, joinState: 'joined', container: 0, event: exit as never },
            ],
          }),
        },
      ],
    });
    await producer.send({
      topic: names.alerts,
      messages: [
        {
          key: 'node-1',
          value: codec.encodeAlert({
            kind: 'oom_kill',
            node: 'node-1',
            container: 'c1',
            containerName: 'web',
            namespace: 'prod',
            pod: 'web-0',
            timeNs: 1_764_000_000_000_000_002n,
            details: { victim: 'nginx' },
          }),
        },
        { key: 'node-1', value: Buffer.from('not avro') },
      ],
    });
    await producer.send({
      topic: names.deadletter,
      messages: [
        {
          key: null,
          value: codec.encodeDeadLetter({
            sourceTopic: names.events,
            sourcePartition: 2,
            sourceOffset: 41n,
            key: Buffer.from('node-1'),
            reason: 'undecodable',
            error: 'bad magic',
            raw: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
            consumerGroup: 'g',
            failedAtNs: 1_764_000_000_000_000_003n,
            rawSize: 4n,
            rawSha256: null,
          }),
        },
      ],
    });
    await producer.disconnect();
  });
  afterAll(async () => {
    if (kafka.value) await deleteTopics(kafka.value, [names.eventsEnriched, names.alerts, names.deadletter]);
  });

  itReal(kafka.missing)(
    'prints an enriched message decoded, typed event and container included',
    async () => {
      const run = await tail(['enriched', '--from-beginning', '--max', '1']);
      expect(run.code).toBe(0);
      expect(run.lines).toHaveLength(1);
      expect(run.lines[0]).toMatchObject({
        partition: 0,
        offset: '0',
        key: 'node-1',
        value: {
          node: 'node-1',
          firstOffset: '7',
          containers: [{ containerName: 'web', image: 'nginx:1' }],
          events: [
            {
              timeNs: '1764000000000000001',
              joinState: 'joined',
              container: 0,
              event: { kind: 'proc_exit' },
            },
          ],
        },
      });
    },
  );

  itReal(kafka.missing)('prints an alert, and a message it cannot decode as an error line', async () => {
    const run = await tail(['alerts', '--from-beginning', '--max', '2']);
    expect(run.code).toBe(0);
    expect(run.lines[0]).toMatchObject({
      value: { kind: 'oom_kill', containerName: 'web', details: { victim: 'nginx' } },
    });
    expect(run.lines[1]).toMatchObject({
      offset: '1',
      error: expect.stringContaining('not a single-object or Confluent Avro message'),
    });
  });

  itReal(kafka.missing)('prints a dead letter with its bytes as base64', async () => {
    const run = await tail(['deadletter', '--from-beginning', '--max', '1']);
    expect(run.code).toBe(0);
    expect(run.lines[0]).toMatchObject({
      value: {
        sourceOffset: '41',
        reason: 'undecodable',
        key: { base64: Buffer.from('node-1').toString('base64') },
        raw: { base64: '3q2+7w==' },
        failedAtNs: '1764000000000000003',
      },
    });
  });

  itReal(kafka.missing)(
    '--schema prints the self-contained schema a reader in another language needs',
    async () => {
      const run = await tail(['enriched', '--schema']);
      expect(run.code).toBe(0);
      // The event records are inlined: avsc compiles it with no other file, and it reads a message.
      const type = avsc.Type.forSchema(JSON.parse(run.stdout), { wrapUnions: true });
      const bytes = codec.encodeEnriched({
        node: 'n',
        sourcePartition: 0,
        firstOffset: 0n,
        lastOffset: 0n,
        firstEvent: 0,
        containers: [],
        events: [
          {
            timeNs: 5n,
            joinState: 'host',
            container: -1,
            event: sampleEvents().find((e) => e.kind === 'cpu_sample') as never,
          },
        ],
      });
      const read = type.fromBuffer(bytes.subarray(10)) as { events: { event: Record<string, unknown> }[] };
      expect(Object.keys(read.events[0]!.event)).toEqual(['io.ktrail.v1.CpuSample']);
    },
  );

  itReal(kafka.missing)('refuses a topic role it does not know', async () => {
    const run = await tail(['bogus']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('one of events, containers, stats, deadletter, enriched, alerts');
  });
});
