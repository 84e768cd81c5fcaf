// met.config.json: the committed JSON Schema is generated from the settings table and must not
// drift from it; validation names the field at fault; flags override the file; and `met train`
// refuses a bad config before doing any work.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { jsonSchema, resolveConfig, validateConfig } from '../src/engine/run/schema';
import { SCHEMA_FILE, schemaText, SETTINGS_DOC, settingsDocText } from '../scripts/gen-schema';
import { MET_DEFAULTS } from '../src/engine/model/met';
import { metConfigOf, TRAIN_DEFAULTS, upgradeMetConfig } from '../src/engine/run/config';
import { FIELDS, flagOf, MODEL_KEYS, SETTINGS } from '../src/engine/settings';
import type { ParamsReport } from '../src/app/params';
import { met } from './tiny-run';

function tmpdir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-config-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the committed schemas/met.config.schema.json is jsonSchema() (run npm run schema when this fails)', () => {
  assert.ok(fs.existsSync(SCHEMA_FILE), `${SCHEMA_FILE} is missing: run npm run schema`);
  const text = fs.readFileSync(SCHEMA_FILE, 'utf8');
  assert.deepEqual(JSON.parse(text), jsonSchema());
  assert.equal(text, schemaText());
  // Every setting is in it, and nothing else is allowed.
  const s = jsonSchema() as { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] };
  assert.deepEqual(Object.keys(s.properties).sort(), ['$schema', ...FIELDS.map((f) => f.key)].sort());
  assert.equal(s.additionalProperties, false);
  assert.deepEqual(s.required, ['data', 'weights']);
});

test('the committed docs/settings.md is settingsDocText() (run npm run schema when this fails)', () => {
  assert.ok(fs.existsSync(SETTINGS_DOC), `${SETTINGS_DOC} is missing: run npm run schema`);
  assert.equal(fs.readFileSync(SETTINGS_DOC, 'utf8'), settingsDocText());
  // One row per setting, each naming its flag.
  const rows = settingsDocText()
    .split('\n')
    .filter((l) => /^\| `/.test(l));
  assert.deepEqual(
    rows.map((l) => /^\| `(\w+)`/.exec(l)![1]),
    FIELDS.map((f) => f.key),
  );
  assert.match(
    rows.find((l) => l.startsWith('| `backboneAct`'))!,
    /`--backbone-act`, `--act`/,
  );
});

test('the settings table is the one source: defaults, the model part, enums, flags and --help', () => {
  // Every enum is an as-const array the schema and validation read (one spelling of each choice).
  for (const f of FIELDS.filter((x) => x.kind === 'enum' || x.kind === 'enumList')) {
    assert.ok(Array.isArray(f.choices) && f.choices.length > 1, f.key);
    if (f.default !== undefined)
      assert.ok(
        [f.default].flat().every((d) => f.choices!.includes(d as string)),
        f.key,
      );
  }
  for (const f of FIELDS) assert.deepEqual((TRAIN_DEFAULTS as Record<string, unknown>)[f.key], f.default, f.key);
  // MET_DEFAULTS is the table's model rows; metConfigOf carries them under the same names.
  assert.deepEqual(Object.keys(MET_DEFAULTS).sort(), [...MODEL_KEYS].sort());
  const c = { ...TRAIN_DEFAULTS, data: 'd', weights: 'w', adapterAct: 'gelu' as const, rank: 3 };
  const m = metConfigOf(c, [1, 2], 5);
  for (const k of MODEL_KEYS) assert.deepEqual(m[k], c[k], k);
  assert.equal(m.adapterAct, 'gelu');
  assert.ok(!('act' in m), "the model's adapter activation is adapterAct, not act");
  // Run folders written before the rename keep their adapter activation.
  assert.equal(upgradeMetConfig({ ...m, adapterAct: undefined, act: 'gelu' } as never as typeof m).adapterAct, 'gelu');
  assert.equal(SETTINGS.backboneAct.flag, 'backbone-act');
  // --help lists every setting's flag; --act still means the backbone's activation.
  const help = met(['train', '--help']);
  assert.equal(help.code, 0);
  for (const f of FIELDS) assert.match(help.out, new RegExp(`--${flagOf(f)}\\b`), f.key);
  assert.match(help.out, /--backbone-act gelu\|gelu_tanh\|relu .*\(also --act\)/);
  assert.match(help.out, /--dry-run/);
});

test('validateConfig names the unknown field and suggests the near match', () => {
  assert.throws(
    () => validateConfig({ data: 'd', 'image-size': 32 }, 'met.config.json'),
    (e: Error) => {
      assert.match(e.message, /met\.config\.json: unknown field 'image-size' \(did you mean 'imageSize'\?\)/);
      return true;
    },
  );
  assert.throws(
    () => validateConfig({ Ea_Positions: 'mha' }, 'f.json'),
    /unknown field 'Ea_Positions' \(did you mean 'eaPositions'\?\)/,
  );
  // Nothing close: no suggestion, still the field's name.
  assert.throws(
    () => validateConfig({ colour: 'red' }, 'f.json'),
    (e: Error) => /unknown field 'colour'$/.test(e.message),
  );
  // $schema is what editors add; it is allowed.
  assert.deepEqual(validateConfig({ $schema: './schemas/met.config.schema.json', rank: 4 }, 'f.json'), { rank: 4 });
});

test('validateConfig names the field with a wrong type or value', () => {
  assert.throws(
    () => validateConfig({ rank: '8' }, 'f.json'),
    /field 'rank' must be an integer in \[1, inf\], got "8"/,
  );
  assert.throws(() => validateConfig({ rank: 0 }, 'f.json'), /field 'rank'/);
  assert.throws(() => validateConfig({ augment: 'yes' }, 'f.json'), /field 'augment' must be true or false/);
  assert.throws(() => validateConfig({ variant: 'mett' }, 'f.json'), /field 'variant' must be one of "met", "no_gr"/);
  assert.throws(() => validateConfig({ exits: [6, 7.5] }, 'f.json'), /field 'exits'/);
  assert.throws(() => validateConfig({ split: [70, 30] }, 'f.json'), /field 'split' must be 3 numbers/);
  assert.throws(() => validateConfig({ split: [70, 20, 20] }, 'f.json'), /field 'split' must add up to 100/);
  assert.throws(() => validateConfig([1, 2], 'f.json'), /must be a JSON object/);
});

test('flags override the config file, which overrides the defaults', () => {
  const c = resolveConfig({ data: 'd', weights: 'w', rank: 16, lr: 0.5 }, { rank: 4 });
  assert.equal(c.rank, 4);
  assert.equal(c.lr, 0.5);
  assert.equal(c.epochs, 20);
  assert.throws(() => resolveConfig({ weights: 'w' }, {}), /'data' is required/);

  // The same through the command line (met params reads configs the way met train does).
  const dir = tmpdir();
  const file = path.join(dir, 'met.config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ $schema: './met.config.schema.json', rank: 16, exits: [10, 11, 12] }, null, 1).replace(
      '{',
      '{\n // comments are allowed',
    ),
  );
  const run = (extra: string[]) => {
    const r = met(['params', '--config', file, '--backbone', 'vit-ti16', '--classes', '10', '--json', ...extra]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as ParamsReport;
  };
  const fromFile = run([]);
  assert.equal(fromFile.config.rank, 16);
  assert.deepEqual(fromFile.config.exits, [10, 11, 12]);
  const flagged = run(['--rank', '4']);
  assert.equal(flagged.config.rank, 4);
  assert.deepEqual(flagged.config.exits, [10, 11, 12]);
});

test('met train --config with a bad field fails at once, naming the field', () => {
  const dir = tmpdir();
  const out = path.join(dir, 'run');
  const cases: [object, RegExp][] = [
    [{ data: dir, weights: path.join(dir, 'none.safetensors'), out, lamda: 0.1 }, /unknown field 'lamda'/],
    [{ data: dir, weights: path.join(dir, 'none.safetensors'), out, rank: 'eight' }, /field 'rank' must be an integer/],
    [
      { data: dir, weights: path.join(dir, 'none.safetensors'), out, imageSize: 32, image_size: 32 },
      /unknown field 'image_size' \(did you mean 'imageSize'\?\)/,
    ],
  ];
  for (const [cfg, re] of cases) {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    const t0 = Date.now();
    const r = met(['train', '--config', file], 60_000);
    assert.notEqual(r.code, 0);
    assert.match(r.err, re);
    assert.match(r.err, /bad\.json/, 'the message names the file');
    assert.ok(!fs.existsSync(out), 'no run folder was made');
    assert.ok(Date.now() - t0 < 30_000);
  }
  // A bad flag value is refused the same way.
  const r = met(['train', '--data', dir, '--weights', 'w', '--rank', 'x']);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /--rank expects an integer/);
});

test('met.config.json may hold // and /* */ comments and trailing commas (VS Code jsonc)', async () => {
  const { stripJsonc, parseJsonc } = await import('../src/app/jsonc');
  const text =
    '{\n  // a comment\n  "data": "a//b", /* inline */ "rank": 8, // trailing\n  "exits": [1, 2,],\n  "s": "x\\"/*y*/",\n}\n';
  assert.deepEqual(parseJsonc(text), { data: 'a//b', rank: 8, exits: [1, 2], s: 'x"/*y*/' });
  assert.equal(stripJsonc(text).length, text.length);
  assert.equal(stripJsonc(text).split('\n').length, text.split('\n').length);
  assert.throws(() => parseJsonc('{"a": 1 "b": 2}'));
});
