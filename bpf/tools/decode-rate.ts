// Decoder throughput on the golden kernel records (no root): records/s through
// decodeBatch for a realistic mix and for single kinds, 256 KiB batches like the addon's.
//   npx tsx bpf/tools/decode-rate.ts [seconds-per-case]
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDecodeStats, decodeBatch } from '../../collector/src/kernel/decode.js';

const dir = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'test/fixtures/records');
const seconds = Number(process.argv[2] ?? '2');
const cases = [
  ['proc_exec', 'proc_fork', 'proc_exit', 'tcp_connect', 'tcp_accept', 'tcp_close'],
  ['tcp_close'],
  ['proc_exit'],
  ['proc_exec'],
];
for (const mix of cases) {
  const one = Buffer.concat(mix.map((k) => readFileSync(join(dir, `${k}.bin`))));
  const batch = Buffer.concat(Array(Math.ceil((256 << 10) / one.length)).fill(one));
  const stats = createDecodeStats();
  for (let i = 0; i < 20; i++) decodeBatch(batch, stats); // warm up
  let n = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(seconds * 1e9);
  while (process.hrtime.bigint() < end) n += decodeBatch(batch, stats).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${mix.join('+').padEnd(64)} ${(n / s / 1e6).toFixed(2)} M records/s`);
}
