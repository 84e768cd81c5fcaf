// Writes schemas/met.config.schema.json and docs/settings.md from the settings table
// (src/engine/settings.ts), so neither the schema VS Code validates met.config.json with nor
// the settings reference ever drifts from what `met train` accepts. test/config.test.ts fails
// when a committed file differs from what this writes.
//
//   npm run schema            regenerate both files
//   npm run schema -- --check exit 1 (and say which) when a committed file is out of date

import * as fs from 'node:fs';
import * as path from 'node:path';
import { jsonSchema } from '../src/engine/run/schema';
import { FIELDS, flagOf } from '../src/engine/settings';

export const SCHEMA_FILE = path.join(__dirname, '..', 'schemas', 'met.config.schema.json');
export const SETTINGS_DOC = path.join(__dirname, '..', 'docs', 'settings.md');

/** The file's exact text: two-space indentation and a final newline, as editors keep it. */
export function schemaText(): string {
  return JSON.stringify(jsonSchema(), null, 2) + '\n';
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (v: unknown) => '`' + (typeof v === 'string' ? v : JSON.stringify(v)) + '`';

/** docs/settings.md: one row per setting, in the table's order. */
export function settingsDocText(): string {
  const lines = [
    '# Settings reference',
    '',
    '<!-- Generated from src/engine/settings.ts by `npm run schema`; do not edit by hand. -->',
    '',
    'Every setting of a fine-tuning run, as a key of `met.config.json` and as a `met train` / `met params`',
    'flag (flags override the file, which overrides the defaults). Paths in a config file are relative to',
    'the file; on the command line, to the working folder. `met train --dry-run` prints the settings a',
    'run would use, resolved as the VS Code extension resolves them.',
    '',
    '| key | flag | type | default | description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const f of FIELDS) {
    const type =
      f.kind === 'enum'
        ? f.choices!.map(code).join(', ')
        : f.kind === 'enumList'
          ? `${f.choices!.map(code).join(', ')}, or a list of them`
          : f.kind === 'ints' || f.kind === 'numbers'
            ? `${f.length ? `${f.length} ` : 'list of '}${f.kind === 'ints' ? 'integers' : 'numbers'}`
            : f.kind === 'bool'
              ? 'boolean'
              : f.kind === 'int'
                ? 'integer'
                : f.kind;
    const range = f.min !== undefined || f.max !== undefined ? ` in [${f.min ?? '-inf'}, ${f.max ?? 'inf'}]` : '';
    const flags = [flagOf(f), ...(f.flagAliases ?? [])].map((x) => `\`--${x}\``).join(', ');
    const def = f.required ? 'required' : f.default !== undefined ? code(f.default) : '';
    lines.push(`| \`${f.key}\` | ${flags} | ${cell(type + range)} | ${def} | ${cell(f.help)} |`);
  }
  return lines.join('\n') + '\n';
}

const FILES: [string, () => string][] = [
  [SCHEMA_FILE, schemaText],
  [SETTINGS_DOC, settingsDocText],
];

if (require.main === module) {
  let stale = false;
  for (const [file, text] of FILES) {
    const rel = path.relative(process.cwd(), file);
    const want = text();
    if (process.argv.includes('--check')) {
      const now = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      if (now !== want) {
        console.error(`${rel} is out of date: run npm run schema`);
        stale = true;
      } else console.log(`${rel} is up to date`);
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, want);
      console.log(`wrote ${rel}`);
    }
  }
  if (stale) process.exit(1);
}
