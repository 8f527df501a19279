// Prints the configuration reference (markdown table) that the README embeds between the
// `<!-- config:begin -->` / `<!-- config:end -->` markers. `--write` updates README.md in place;
// a unit test fails when the README is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { describeSettings } from '../../common/config.js';

export function configReferenceTable(): string {
  const rows = describeSettings().map(
    (s) =>
      `| \`${s.setting}\` | \`${s.env}\` | ${s.derived ?? (s.default === undefined ? '—' : `\`${JSON.stringify(s.default)}\``)} |`,
  );
  return ['| setting | environment | default |', '|---|---|---|', ...rows].join('\n');
}

export function withReference(readme: string): string {
  return readme.replace(
    /<!-- config:begin -->[\s\S]*<!-- config:end -->/,
    `<!-- config:begin -->\n${configReferenceTable()}\n<!-- config:end -->`,
  );
}

if (process.argv[1]?.endsWith('config-reference.ts')) {
  if (process.argv.includes('--write')) {
    const path = new URL('../../README.md', import.meta.url);
    writeFileSync(path, withReference(readFileSync(path, 'utf8')));
  } else console.log(configReferenceTable());
}
