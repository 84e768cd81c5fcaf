// "MET: Create config" writes a commented met.config.json (src/extension/configTemplate.ts):
// `met train` must load it as written, with every default of the schema, and the commented-out
// examples must be valid settings once uncommented.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfigFile } from '../src/app/configFile';
import { configTemplate } from '../src/extension/configTemplate';
import { TRAIN_DEFAULTS } from '../src/engine/run/config';
import { resolveConfig } from '../src/engine/run/schema';
import { FIELDS } from '../src/engine/settings';
import { parseJsonc } from '../src/app/jsonc';

test('config template: loads as written and holds every default', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-template-'));
  try {
    const file = path.join(dir, 'met.config.json');
    const text = configTemplate({ data: 'images', weights: 'vit.safetensors', values: { heads: 4 } });
    fs.writeFileSync(file, text);
    const c = loadConfigFile(file);
    assert.equal(c.data, path.join(dir, 'images'));
    assert.equal(c.weights, path.join(dir, 'vit.safetensors'));
    assert.equal(c.heads, 4);
    for (const [k, v] of Object.entries(TRAIN_DEFAULTS)) assert.deepEqual((c as Record<string, unknown>)[k], v, k);
    // Every setting is mentioned with its help text.
    for (const f of FIELDS) {
      assert.ok(text.includes(`"${f.key}":`), `${f.key} missing`);
      assert.ok(text.includes(f.help.split(' ').slice(0, 3).join(' ')), `help of ${f.key} missing`);
    }
    assert.ok(resolveConfig(c, {}));

    // Uncommenting every example still gives a valid config.
    const all = text.replace(/^(\s*)\/\/ ("\w+": .*)$/gm, '$1$2');
    fs.writeFileSync(file, all);
    const u = loadConfigFile(file);
    assert.deepEqual(u.exits, [6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(u.mean, [0.5, 0.5, 0.5]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('config template: placeholders for unknown paths', () => {
  const text = configTemplate();
  const obj = parseJsonc(text) as Record<string, unknown>;
  assert.equal(obj.data, 'path/to/images');
  assert.equal(obj.weights, 'path/to/backbone.safetensors');
});
