// deploy/docker/Dockerfile builds for real. No image registry is reachable here, so the base
// is made locally (deploy/docker/base-image.sh: Debian 12 by debootstrap + the pinned Node 24,
// `docker import`). Checked: the build context leaves out what a checkout installs and builds
// (.dockerignore); both runtime images run Node 24 and hold no compiler and no dev package;
// the processor image runs as uid 65532, loads chDB and its addon, and starts against the
// real Kafka until ready, then stops cleanly on SIGTERM; the collector image has no chDB
// engine, and its addon loads the eBPF objects and captures an exec from the real kernel.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { REPO_ROOT } from '../../common/repo-root.js';
import { missingKernel } from '../support/bpf.js';
import type { DockerEndpoint } from '../support/docker.js';
import type { KafkaEndpoint } from '../support/kafka.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const docker = endpointOrReason<DockerEndpoint>(inject('docker'));
const kafka = endpointOrReason<KafkaEndpoint>(inject('kafka'));
const missing = docker.missing ?? missingRoot();

// One set of tags per checkout, kept as the next run's layer cache (~4 GB: `docker image rm`
// ktrail-test/*:<tag> frees it); a rebuild replaces them, and what it replaced is pruned by label.
const checkout = createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 10);
const LABEL = `ktrail.test.image=${checkout}`;
const image = (name: string) => `ktrail-test/${name}:${checkout}`;
let base = '';
const pinnedNode = () =>
  run('bash', [join(REPO_ROOT, 'deploy/local/node.sh'), 'version']).then((r) => r.stdout.trim());

async function dk(args: string[], options: { input?: string; timeout?: number } = {}): Promise<string> {
  const child = run('docker', ['-H', `unix://${docker.value!.socketPath}`, ...args], {
    cwd: REPO_ROOT,
    timeout: options.timeout ?? 120_000,
    maxBuffer: 64 << 20,
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  if (options.input !== undefined) child.child.stdin?.end(options.input);
  try {
    return (await child).stdout.trim();
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    const tail = `${e.stdout ?? ''}\n${e.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new Error(`docker ${args.slice(0, 3).join(' ')} failed: ${tail}`);
  }
}

/** Builds a stage of the Dockerfile on the local base (host network: dockerd runs without a bridge). */
const build = (target: string) =>
  dk(
    [
      'build',
      '--force-rm',
      '--network',
      'host',
      '--label',
      LABEL,
      '--build-arg',
      `BASE=${base}`,
      '-f',
      'deploy/docker/Dockerfile',
      '--target',
      target,
      '-t',
      image(target),
      '.',
    ],
    { timeout: 1_200_000 },
  );

/** Runs `sh -c script` in an image, without network, as the image's user. */
const inImage = (name: string, script: string) =>
  dk(['run', '--rm', '--network', 'none', '--entrypoint', 'sh', image(name), '-c', script]);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const prune = () => dk(['image', 'prune', '--force', '--filter', `label=${LABEL}`]);

beforeAll(async () => {
  if (missing) return;
  const { stdout } = await run('bash', [join(REPO_ROOT, 'deploy/docker/base-image.sh')], {
    timeout: 900_000,
  });
  base = stdout.trim().split('\n').at(-1) ?? '';
  await prune();
}, 900_000);

afterAll(async () => {
  if (missing) return;
  await dk(['image', 'rm', '--force', image('context')]).catch(() => {});
  await prune().catch(() => {});
});

describe('docker images (deploy/docker/Dockerfile, local base image)', () => {
  itReal(missing)(
    'the build context leaves out what a checkout installs and builds',
    async () => {
      await dk(['build', '--label', LABEL, '-t', image('context'), '-f', '-', '.'], {
        input: `FROM ${base}\nCOPY . /ctx\n`,
        timeout: 300_000,
      });
      const excluded = [
        '.git',
        'node_modules',
        '.cache',
        'data',
        'dist',
        'native/build',
        'bpf/.output',
        '.scratch',
        '.exp',
      ];
      const present = await inImage(
        'context',
        `cd /ctx; for p in ${excluded.join(' ')}; do [ -e "$p" ] && echo "$p"; done; find . -name node_modules -o -name '*.log' | head; true`,
      );
      expect(present).toBe('');
      // What the build needs is there, and the context is small.
      expect(
        await inImage('context', 'cd /ctx && ls package-lock.json bpf/process.bpf.c native/binding.gyp'),
      ).toContain('native/binding.gyp');
      const kib = Number(await inImage('context', 'du -sk /ctx | cut -f1'));
      expect(kib).toBeLessThan(50 * 1024);
    },
    600_000,
  );

  itReal(missing)(
    'builds both images: Node 24, no compiler, no dev package; only the processor has chDB',
    async () => {
      // Every stage gets a tag of its own, so that a rebuild leaves none of them untagged and
      // unlabelled (the legacy builder labels only the target): what it replaces is pruned.
      for (const stage of ['build', 'collector-packages', 'processor-packages', 'collector', 'processor'])
        await build(stage);
      const node = `v${await pinnedNode()}`;
      for (const name of ['collector', 'processor']) {
        expect(await inImage(name, 'node --version')).toBe(node);
        expect(await inImage(name, 'for c in cc c++ gcc g++ clang make; do command -v $c; done; true')).toBe(
          '',
        );
        expect(
          await inImage(
            name,
            'cd /ktrail/node_modules && ls -d vitest typescript node-gyp @biomejs ssh2 2>/dev/null; true',
          ),
        ).toBe('');
        expect(
          await inImage(name, 'ls /ktrail/dist/collector/src/cli.js /ktrail/dist/processor/src/cli.js'),
        ).toContain('cli.js');
      }
      expect(await inImage('processor', 'ls -d /ktrail/node_modules/@chdb/lib-linux-x64-gnu')).toContain(
        'lib-linux',
      );
      expect(
        await inImage('collector', 'ls -d /ktrail/node_modules/@chdb/lib-linux-x64-gnu 2>/dev/null; true'),
      ).toBe('');
    },
    1_500_000,
  );

  itReal(missing)(
    'the processor image runs as uid 65532 and loads chDB and the codec addon',
    async () => {
      expect(await dk(['image', 'inspect', '--format', '{{.Config.User}}', image('processor')])).toBe(
        '65532:65532',
      );
      expect(await inImage('processor', 'id -u; id -g')).toBe('65532\n65532');
      const code = `const { query } = require('chdb');
        const codec = require('/ktrail/native/build/Release/ktrail_codec.node');
        console.log(JSON.stringify({ ch: query('SELECT version()', 'TSV').trim(), crc: codec.crc32c(Buffer.from('123456789')) }));`;
      const out = JSON.parse(
        await inImage('processor', `cd /ktrail && node -e "${code.replace(/"/g, '\\"')}"`),
      ) as {
        ch: string;
        crc: number;
      };
      expect(out.ch).toMatch(/^2[6-9]\./);
      expect(out.crc).toBe(0xe3069283);
    },
    120_000,
  );

  itReal(missing ?? kafka.missing)(
    'the processor image starts against the real Kafka, gets ready, and stops on SIGTERM',
    async () => {
      const [httpPort, queryPort] = [await freePort(), await freePort()];
      const tag = randomBytes(4).toString('hex');
      const name = `ktrail-image-processor-${tag}`;
      await dk([
        'run',
        '--detach',
        '--name',
        name,
        '--network',
        'host',
        '--env',
        `KTRAIL_KAFKA_BROKERS=${kafka.value!.brokers.join(',')}`,
        '--env',
        `KTRAIL_KAFKA_TOPIC_PREFIX=image-${tag}.`,
        '--env',
        `KTRAIL_PROCESSOR_GROUP_ID=image-${tag}`,
        '--env',
        `KTRAIL_HTTP_PORT=${httpPort}`,
        '--env',
        `KTRAIL_PROCESSOR_QUERY_PORT=${queryPort}`,
        '--env',
        'KTRAIL_KAFKA_PARTITIONS=1',
        image('processor'),
      ]);
      try {
        await waitFor(
          'processor /readyz',
          () =>
            fetch(`http://127.0.0.1:${httpPort}/readyz`).then(
              (r) => (r.ok ? true : undefined),
              () => undefined,
            ),
          120_000,
        );
        await dk(['stop', '--time', '60', name], { timeout: 90_000 });
        expect(await dk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe('0');
        // Its embedded store was written in its home (KTRAIL_CLICKHOUSE_CHDB_PATH), nothing under /ktrail.
        const changed = (await dk(['diff', name])).split('\n').map((l) => l.slice(2));
        expect(changed).toContain('/var/lib/ktrail/chdb');
        expect(changed.filter((p) => p.startsWith('/ktrail'))).toEqual([]);
      } finally {
        await dk(['rm', '--force', name]).catch(() => {});
      }
    },
    300_000,
  );

  itReal(missing ?? missingKernel())(
    "the collector image's addon captures an exec from the real kernel",
    async () => {
      const marker = `ktrail-image-${randomBytes(4).toString('hex')}`;
      const name = `ktrail-image-collector-${marker}`;
      // --dry-run: decoded events as JSON lines on stdout; no Kafka, no metadata providers.
      // CAP_SYS_ADMIN rather than --privileged: this dockerd cannot grant every capability
      // (CAP_SYS_RESOURCE), and Debian's docker 20.10 does not know CAP_BPF/CAP_PERFMON.
      await dk([
        'run',
        '--detach',
        '--name',
        name,
        '--cap-add',
        'SYS_ADMIN',
        '--security-opt',
        'seccomp=unconfined',
        '--security-opt',
        'apparmor=unconfined',
        '--network',
        'none',
        '--volume',
        '/sys/kernel/tracing:/sys/kernel/tracing',
        '--env',
        'KTRAIL_COLLECTOR_PROGRAMS=kt_proc_exec',
        image('collector'),
        'collector',
        '--dry-run',
      ]);
      try {
        const seen = await waitFor(
          'the marker exec in the image collector output',
          async () => {
            await run('sh', ['-c', `: ${marker}`]);
            const out = await dk(['logs', name]);
            // By its args: this test's own `docker logs <name>` exec names the marker too.
            return out
              .split('\n')
              .filter((l) => l.startsWith('{"kind":"proc_exec"'))
              .map((l) => JSON.parse(l) as { args?: string[] })
              .find((e) => e.args?.join(' ') === `sh -c : ${marker}`);
          },
          60_000,
        );
        expect(seen).toMatchObject({ kind: 'proc_exec', args: ['sh', '-c', `: ${marker}`] });
      } finally {
        await dk(['rm', '--force', name]).catch(() => {});
      }
    },
    120_000,
  );
});
