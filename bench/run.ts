// `npm run bench [kernel|collector|processor ...]`: runs each benchmark in its own process
// (so RSS and CPU figures are its own), one after another on this 2-core machine. Each
// writes its section of docs/benchmarks.md.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const ALL = ['kernel', 'collector', 'processor', 'sidecar'];
const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ALL;
let failed = 0;
for (const name of wanted) {
  const script = new URL(`./${name}/run.ts`, import.meta.url).pathname;
  if (!existsSync(script)) {
    console.error(`[bench] ${name}: no ${script}`);
    failed++;
    continue;
  }
  console.log(`[bench] ${name}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', script], { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`[bench] ${name} failed (exit ${result.status})`);
    failed++;
  }
}
process.exit(failed > 0 ? 1 : 0);
