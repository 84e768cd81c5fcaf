// Writes schemas/met.config.schema.json from the settings table (src/engine/run/schema.ts), so
// the schema VS Code validates met.config.json with never drifts from what `met train` accepts.
// test/config.test.ts fails when the committed file differs from jsonSchema().
//
//   npm run schema            regenerate the file
//   npm run schema -- --check exit 1 (and say so) when the committed file is out of date

import * as fs from 'node:fs';
import * as path from 'node:path';
import { jsonSchema } from '../src/engine/run/schema';

export const SCHEMA_FILE = path.join(__dirname, '..', 'schemas', 'met.config.schema.json');

/** The file's exact text: two-space indentation and a final newline, as editors keep it. */
export function schemaText(): string {
  return JSON.stringify(jsonSchema(), null, 2) + '\n';
}

if (require.main === module) {
  const text = schemaText();
  const rel = path.relative(process.cwd(), SCHEMA_FILE);
  if (process.argv.includes('--check')) {
    const now = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : '';
    if (now !== text) {
      console.error(`${rel} is out of date: run npm run schema`);
      process.exit(1);
    }
    console.log(`${rel} is up to date`);
  } else {
    fs.mkdirSync(path.dirname(SCHEMA_FILE), { recursive: true });
    fs.writeFileSync(SCHEMA_FILE, text);
    console.log(`wrote ${rel}`);
  }
}
