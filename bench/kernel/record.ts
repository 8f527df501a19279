// Records what the kernel reports into a capture file (collector/src/kernel/capture.ts), so
// the collector's benchmarks and tests can replay real batches without root.
//   sudo npx tsx bench/kernel/record.ts OUT.ktcap [--seconds 10] [--objects bpf/.output]
// Prints what it recorded and what was lost (kernel drops, addon drops) while recording.
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openCapture } from '../../collector/src/kernel/addon.js';
import { createCaptureWriter } from '../../collector/src/kernel/capture.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '10' },
    objects: { type: 'string', default: resolve(new URL('../../bpf/.output', import.meta.url).pathname) },
  },
});
const out = positionals[0];
if (out === undefined) {
  console.error('usage: tsx bench/kernel/record.ts OUT.ktcap [--seconds N] [--objects DIR]');
  process.exit(2);
}
const objects = readdirSync(values.objects)
  .filter((f) => f.endsWith('.bpf.o'))
  .map((f) => join(values.objects, f));
const writer = createCaptureWriter(out);
const capture = openCapture(
  // Leave the recorder's own activity out of the recording.
  {
    objects,
    ringBufferBytes: 8 << 20,
    batchMaxBytes: 256 << 10,
    batchMaxMs: 100,
    cfg: { ignore_tgid: process.pid },
  },
  (buf, records) => {
    writer.write(buf, records);
  },
);
await new Promise((r) => setTimeout(r, Number(values.seconds) * 1000));
capture.close();
await new Promise((r) => setTimeout(r, 50)); // batches queued before close still arrive
const c = capture.counters(); // final totals, kept by close()
await writer.close();
console.log(
  JSON.stringify({
    file: out,
    batches: writer.batches,
    records: writer.records,
    kernelDrops: c.kernelDrops.reduce((a, b) => a + b, 0),
    addonDrops: c.lostRecords,
    malformed: c.malformedRecords,
  }),
);
