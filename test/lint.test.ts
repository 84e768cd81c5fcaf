// The guard-rails of `npm run lint` bite: each is shown failing on a small bad input and passing
// on a clean one. ESLint runs on virtual files (lintText with a path inside the tree, so the layer
// rule judges them by where they would live); the cycle check on a temporary folder; Prettier on
// a snippet with the project's own options.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ESLint } from 'eslint';
import * as prettier from 'prettier';
// @ts-expect-error: plain JavaScript without declarations (type-checked by tsconfig.scripts.json)
import { buildGraph, findCycles, sourceFiles } from '../scripts/lint/import-graph.mjs';

const ROOT = path.resolve(__dirname, '..');
let eslint: ESLint | undefined;

/** The messages ESLint gives `code` as if it were the file `rel` of the tree: "ruleId: message". */
async function lint(rel: string, code: string): Promise<string[]> {
  eslint ??= new ESLint({ cwd: ROOT });
  const [res] = await eslint.lintText(code, { filePath: path.join(ROOT, rel) });
  return res.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

function only(messages: string[], pattern: RegExp): void {
  assert.equal(messages.length, 1, messages.join('\n'));
  assert.match(messages[0], pattern);
}

test('layer rule: the engine never imports vscode, the protocol, the CLI, the app, the server or the extension', async () => {
  only(
    await lint('src/engine/x.ts', "import * as vscode from 'vscode';\nexport const v = vscode;\n"),
    /met\/layers: layer rule: src\/engine never imports vscode/,
  );
  only(
    await lint('src/engine/x.ts', "import type { Request } from '../protocol';\nexport type R = Request;\n"),
    /src\/engine never imports the protocol/,
  );
  // Judged by where the specifier lands, also for folders that do not exist yet.
  only(
    await lint('src/engine/data/x.ts', "export { a } from '../../cli/nothing';\n"),
    /src\/engine never imports src\/cli/,
  );
  only(
    await lint('src/engine/data/x.ts', "import { a } from '../../app/nothing';\nexport const b = a;\n"),
    /never imports src\/app/,
  );
  only(
    await lint('src/engine/x.ts', "export const m = () => import('../server/nothing');\n"),
    /never imports src\/server/,
  );
  only(await lint('src/engine/x.ts', "export * from '../extension';\n"), /never imports src\/extension/);
});

test('layer rule: inside the engine, a module imports only its own folder and lower levels (types too)', async () => {
  // The model knows no run folder, not even its types: the first step of an import circle.
  only(
    await lint(
      'src/engine/model/x.ts',
      "import type { RunSummary } from '../run/runFolder';\nexport type R = RunSummary;\n",
    ),
    /layer rule \(engine levels\): src\/engine\/model \(level 2\) imports src\/engine\/run \(level 5\)/,
  );
  // Same level is not below: train and infer stay apart.
  only(
    await lint(
      'src/engine/train/x.ts',
      "import { buildSegments } from '../infer/segments';\nexport const b = buildSegments;\n",
    ),
    /src\/engine\/train \(level 4\) imports src\/engine\/infer \(level 4\)/,
  );
  // A new engine folder must be given a level before its imports can be judged.
  only(
    await lint('src/engine/model/x.ts', "import { a } from '../newfolder/a';\nexport const b = a;\n"),
    /src\/engine\/newfolder has no level/,
  );
  // Downward and within a folder: allowed.
  assert.deepEqual(
    await lint(
      'src/engine/run/x.ts',
      "import { train } from '../train/trainer';\nimport { readJson } from './runFolder';\nimport { BRANCH_TYPES } from '../settings';\nexport const t = [train, readJson, BRANCH_TYPES];\n",
    ),
    [],
  );
});

test('layer rule: app, server and CLI keep their directions', async () => {
  only(
    await lint('src/app/x.ts', "import { a } from '../cli/args';\nexport const b = a;\n"),
    /src\/app never imports src\/cli/,
  );
  only(
    await lint('src/app/x.ts', "import type { Request } from '../protocol';\nexport type R = Request;\n"),
    /src\/app never imports the protocol/,
  );
  only(
    await lint('src/server/x.ts', "import * as vscode from 'vscode';\nexport const v = vscode;\n"),
    /src\/server never imports vscode/,
  );
  only(
    await lint('src/server/x.ts', "import { a } from '../cli/args';\nexport const b = a;\n"),
    /src\/server never imports src\/cli/,
  );
  only(
    await lint('src/cli/x.ts', "import { a } from '../extension/log';\nexport const b = a;\n"),
    /src\/cli never imports src\/extension/,
  );
  // Allowed: the server uses the engine, the app layer and the protocol; the CLI the server.
  const ok =
    "import { a } from '../engine/tensor';\nimport { b } from '../app/x';\nimport type { R } from '../protocol';\nexport const c = [a, b] as R[];\n";
  assert.deepEqual(await lint('src/server/x.ts', ok), []);
  assert.deepEqual(await lint('src/cli/x.ts', "import { s } from '../server/x';\nexport const t = s;\n"), []);
});

test('layer rule: the protocol has only type imports, of engine and app types', async () => {
  only(
    await lint('src/protocol.ts', "import { UserError } from './engine/tensor';\nexport const E = UserError;\n"),
    /src\/protocol\.ts: type imports only.*'\.\/engine\/tensor' is imported at runtime/,
  );
  only(
    await lint('src/protocol.ts', "import type { Log } from './extension/log';\nexport type L = Log;\n"),
    /protocol\.ts imports only engine and app types/,
  );
  assert.deepEqual(
    await lint('src/protocol.ts', "import type { HostTensor } from './engine/tensor';\nexport type T = HostTensor;\n"),
    [],
  );
});

test('layer rule: the extension host imports only modules that never load sharp or onnxruntime', async () => {
  only(
    await lint(
      'src/extension/x.ts',
      "import { loadImage } from '../engine/data/image';\nexport const f = loadImage;\n",
    ),
    /src\/extension imports only pure modules at runtime, but '\.\.\/engine\/data\/image' loads sharp \(src\/extension\/x\.ts → src\/engine\/data\/image\.ts → src\/engine\/data\/sharp\.ts → sharp\)/,
  );
  // A transitive chain is reported whole (the session module loads onnxruntime-node).
  const [m] = await lint(
    'src/extension/x.ts',
    "import { train } from '../engine/train/trainer';\nexport const t = train;\n",
  );
  assert.match(
    m,
    /loads onnxruntime-node \(src\/extension\/x\.ts → src\/engine\/train\/trainer\.ts → .* → onnxruntime-node\)/,
  );
  only(
    await lint('src/extension.ts', "import sharp from 'sharp';\nexport const s = sharp;\n"),
    /loads sharp \(src\/extension\.ts → sharp\)/,
  );
  // Types cost nothing at runtime; pure engine modules are fine.
  assert.deepEqual(
    await lint(
      'src/extension/x.ts',
      "import type { Preprocess } from '../engine/data/image';\nimport { applyThresholds } from '../engine/infer/thresholds';\nexport const a: [Preprocess?, unknown?] = [undefined, applyThresholds];\n",
    ),
    [],
  );
});

test('layer rule: webviews load no Node, vscode, extension or CLI code', async () => {
  only(
    await lint('webview-ui/x/main.ts', "import * as fs from 'node:fs';\nexport const f = fs;\n"),
    /webview-ui never imports Node built-ins/,
  );
  only(
    await lint('webview-ui/x/main.ts', "import * as path from 'path';\nexport const p = path;\n"),
    /webview-ui never imports Node built-ins/,
  );
  only(
    await lint('webview-ui/x/main.ts', "import * as vscode from 'vscode';\nexport const v = vscode;\n"),
    /webview-ui never imports vscode/,
  );
  only(
    await lint('webview-ui/x/main.ts', "import { a } from '../../src/extension/log';\nexport const b = a;\n"),
    /never imports src\/extension/,
  );
  only(
    await lint('webview-ui/x/main.ts', "import { a } from '../../src/cli/args';\nexport const b = a;\n"),
    /never imports src\/cli/,
  );
  // Transitively too: this engine module reads files with node:fs.
  assert.match(
    (
      await lint(
        'webview-ui/x/main.ts',
        "import { listImageFiles } from '../../src/engine/data/files';\nexport const l = listImageFiles;\n",
      )
    )[0],
    /webview-ui imports only pure modules at runtime, but '\.\.\/\.\.\/src\/engine\/data\/files' loads (node:)?\w+/,
  );
  assert.deepEqual(
    await lint(
      'webview-ui/x/main.ts',
      "import type * as fs from 'node:fs';\nimport { applyThresholds } from '../../src/engine/infer/thresholds';\nexport const a = [applyThresholds] as unknown as typeof fs;\n",
    ),
    [],
  );
});

test('type-only imports are whole `import type` statements (verbatimModuleSyntax)', async () => {
  only(
    await lint('test/x.ts', "import { type HostTensor } from '../src/engine/tensor';\nexport type T = HostTensor;\n"),
    /no-import-type-side-effects/,
  );
  only(
    await lint('test/x.ts', "import { HostTensor } from '../src/engine/tensor';\nexport type T = HostTensor;\n"),
    /consistent-type-imports/,
  );
});

test('the cycle check finds a two-file import circle, and passes a tree without one', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-lint-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b';\nexport const a = () => b;\n");
    fs.writeFileSync(
      path.join(dir, 'b.ts'),
      "import type { a } from './a';\nexport const b = 1 as unknown as typeof a;\n",
    );
    fs.writeFileSync(path.join(dir, 'c.ts'), "import { a } from './a';\nexport const c = a;\n");
    const cycles: string[][] = findCycles(buildGraph(sourceFiles(dir, ['.'])));
    assert.deepEqual(
      cycles.map((c) => c.map((f) => path.basename(f))),
      [['a.ts', 'b.ts']],
    );
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/lint/check-cycles.mjs'), dir], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /1 import circle\(s\):\n.*a\.ts -> .*b\.ts -> .*a\.ts/);
    // Break the circle: the check passes.
    fs.writeFileSync(path.join(dir, 'b.ts'), 'export const b = 1;\n');
    const ok = spawnSync(process.execPath, [path.join(ROOT, 'scripts/lint/check-cycles.mjs'), dir], {
      encoding: 'utf8',
    });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /no import circles among 3 files/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("Prettier's check fails a mis-formatted file and passes a formatted one (project options)", async () => {
  const filepath = path.join(ROOT, 'src/engine/x.ts');
  const options = { ...(await prettier.resolveConfig(filepath)), filepath };
  assert.equal(options.printWidth, 120);
  assert.equal(await prettier.check('const a = {b:1,c:"x"}\n', options), false);
  assert.equal(await prettier.check('const a = { b: 1, c: "x" };\n', options), false); // double quotes
  assert.equal(await prettier.check("const a = { b: 1, c: 'x' };\n", options), true);
  // The file itself, as the tree formats it.
  const self = path.join(ROOT, 'test/lint.test.ts');
  assert.equal(await prettier.check(fs.readFileSync(self, 'utf8'), { ...options, filepath: self }), true);
});

test('ESLint passes a clean file in every layer', async () => {
  const clean =
    "import type { HostTensor } from '../engine/tensor';\n\nexport function size(t: HostTensor): number {\n  return t.data.length;\n}\n";
  for (const rel of ['src/app/x.ts', 'src/server/x.ts', 'src/cli/x.ts', 'src/extension/x.ts'])
    assert.deepEqual(await lint(rel, clean), [], rel);
  assert.deepEqual(await lint('src/engine/model/y.ts', clean.replace('../engine/tensor', '../tensor')), []);
});
