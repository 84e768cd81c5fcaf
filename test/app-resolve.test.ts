// One resolution at every front door (issue 10): the same config file, weights, data and
// settings give the same resolved run from `met train --dry-run`, from a forked `met engine`'s
// train/resolve (what the extension asks), and from the extension's own path (its dataset
// detection, then the application layer's resolveRun). A table of inputs covers heads taken
// from a config.json beside the weights (the tiny ViT's width, 64, does not imply them), a
// train/valid/test folder with images below the class folders, an implicit ./met.config.json,
// and flags over the file; a checkpoint whose heads nothing gives fails with the code
// 'heads-unknown' at all three. Plus the dataset detection's rules against the engine's scan.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findConfigFile } from '../src/app/configFile';
import { detectDataset, findDatasets } from '../src/app/dataset';
import { type RunPlan, resolveRun } from '../src/app/resolve';
import { DEMO_CLASSES, writeShapeFolder } from '../src/engine/demo/shapes';
import { IMAGE_EXTENSIONS } from '../src/engine/data/files';
import { scanDataset } from '../src/engine/data/folder';
import { UserError } from '../src/engine/tensor';
import { Engine } from './engine-ipc';
import { MET } from './tiny-run';

const ROOT = path.resolve(__dirname, '..');
const TINY_VIT = path.join(ROOT, 'assets', 'tiny-vit', 'tiny-vit.safetensors');
const CLASSES = DEMO_CLASSES.slice(0, 3);

interface Workspace {
  root: string;
  /** root/shapes: class folders. */
  classFolders: string;
  /** root/splits: train/ valid/ test/, each image one folder below its class folder. */
  splits: string;
  /** The tiny ViT with a Hugging Face config.json beside it (num_attention_heads 4). */
  hfWeights: string;
  /** The tiny ViT alone: nothing says its head count. */
  bareWeights: string;
}

async function workspace(): Promise<Workspace> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'met-app-'));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  const classFolders = path.join(root, 'shapes');
  await writeShapeFolder({ out: classFolders, classes: CLASSES, perClass: 12, seed: 5 });
  // The same images as train/ valid/ test/ (8/2/2 per class), one level below the class folder.
  const splits = path.join(root, 'splits');
  for (const c of CLASSES) {
    const files = fs.readdirSync(path.join(classFolders, c)).sort();
    files.forEach((f, i) => {
      const split = i < 8 ? 'train' : i < 10 ? 'valid' : 'test';
      const dir = path.join(splits, split, c, 'batch1');
      fs.mkdirSync(dir, { recursive: true });
      fs.copyFileSync(path.join(classFolders, c, f), path.join(dir, f));
    });
  }
  const weightsDir = (name: string) => {
    fs.mkdirSync(path.join(root, name), { recursive: true });
    return path.join(root, name);
  };
  const hfWeights = path.join(weightsDir('hf'), 'model.safetensors');
  fs.copyFileSync(TINY_VIT, hfWeights);
  fs.writeFileSync(path.join(root, 'hf', 'config.json'), JSON.stringify({ num_attention_heads: 4, hidden_size: 64 }));
  const bareWeights = path.join(weightsDir('bare'), 'model.safetensors');
  fs.copyFileSync(TINY_VIT, bareWeights);
  return { root, classFolders, splits, hfWeights, bareWeights };
}

interface Case {
  name: string;
  /** met.config.json written into `configDir` (relative paths are relative to it). */
  config?: Record<string, unknown>;
  /** Where the config file goes, relative to the workspace ('.': found implicitly by `met train`). */
  configDir?: string;
  /** Settings on top (flags / picked folder and weights / overrides), paths relative to the workspace. */
  settings: Record<string, unknown>;
  /** What the resolved run must show. */
  expect?: (p: RunPlan, w: Workspace) => void;
  /** Or the error code all three doors must give. */
  code?: string;
}

const CASES: Case[] = [
  {
    name: 'class folders, the bundled tiny ViT (heads from its config.json), flags only',
    settings: { data: 'shapes', weights: TINY_VIT, epochs: 3, batch: 8 },
    expect: (p) => {
      assert.equal(p.backbone.heads, 4);
      assert.equal(p.config.heads, 4);
      assert.ok(
        p.notes.some((n) => /^heads 4 from .*tiny-vit.config\.json$/.test(n)),
        p.notes.join('; '),
      );
      assert.deepEqual(p.exits, [1, 2, 3, 4, 5, 6]);
      assert.deepEqual([p.config.epochs, p.config.batch, p.config.rank], [3, 8, 8]);
      assert.equal(p.counts.train + p.counts.val + p.counts.test, 36);
    },
  },
  {
    name: 'train/valid/test at depth, Hugging Face heads beside the weights, a config file with a flag over it',
    config: { data: '../splits', weights: '../hf/model.safetensors', rank: 4, lambda: 0.1, exits: [2, 4, 6] },
    configDir: 'cfg',
    settings: { rank: 2, adapterAct: 'gelu' },
    expect: (p, w) => {
      assert.equal(p.config.data, w.splits);
      assert.equal(p.config.weights, w.hfWeights);
      assert.equal(p.backbone.heads, 4);
      assert.ok(
        p.notes.some((n) => n === `heads 4 from ${path.join('hf', 'config.json')}`),
        p.notes.join('; '),
      );
      assert.deepEqual(p.exits, [2, 4, 6]);
      assert.equal(p.config.rank, 2, 'the flag wins over the file');
      assert.equal(p.config.lambda, 0.1, 'the file wins over the default');
      assert.equal(p.config.adapterAct, 'gelu');
      assert.deepEqual(p.counts, { train: 24, val: 6, test: 6 }, 'valid/ is the val split');
      assert.deepEqual(p.classes, [...CLASSES].sort());
    },
  },
  {
    name: './met.config.json found implicitly, heads in it for a bare checkpoint',
    config: { data: 'shapes', weights: 'bare/model.safetensors', heads: 2, variant: 'no_gr' },
    configDir: '.',
    settings: { seed: 3 },
    expect: (p) => {
      assert.equal(p.backbone.heads, 2, "the config's heads win over nothing beside the weights");
      assert.equal(p.config.variant, 'no_gr');
      assert.equal(p.config.seed, 3);
      assert.ok(!p.notes.some((n) => n.startsWith('heads')));
    },
  },
  {
    name: 'a bare checkpoint and no heads anywhere',
    settings: { data: 'shapes', weights: 'bare/model.safetensors' },
    code: 'heads-unknown',
  },
];

/** `met train --dry-run` in the workspace, the settings as flags. */
function cliDryRun(ws: string, settings: Record<string, unknown>): { code: number; out: string; err: string } {
  const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
  const args = ['train', '--dry-run'];
  for (const [k, v] of Object.entries(settings)) args.push(`--${kebab(k)}`, Array.isArray(v) ? v.join(',') : String(v));
  const r = spawnSync(process.execPath, [MET, ...args], { cwd: ws, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** What must be equal everywhere: all but the run folder's time stamp and the config file's spelling. */
function comparable(p: RunPlan): unknown {
  const { out, ...config } = p.config;
  return { ...p, config, notes: p.notes.filter((n) => !n.startsWith('settings start from')), out: path.dirname(out!) };
}

test('met train --dry-run, the engine process and the extension resolve the same run (table of inputs)', async () => {
  const w = await workspace();
  const engine = new Engine(w.root);
  await engine.ready;
  try {
    for (const c of CASES) {
      const configFile = c.config ? path.join(w.root, c.configDir!, 'met.config.json') : undefined;
      if (configFile) {
        fs.mkdirSync(path.dirname(configFile), { recursive: true });
        fs.writeFileSync(configFile, JSON.stringify(c.config, null, 2));
      }
      const abs = (v: unknown) => (typeof v === 'string' ? path.resolve(w.root, v) : undefined);
      const { data, weights, ...overrides } = c.settings;

      // 1. The command line, in the workspace: an implicit ./met.config.json is found, others named.
      const explicit = configFile && c.configDir !== '.' ? ['config', path.relative(w.root, configFile)] : null;
      const cli = cliDryRun(w.root, explicit ? { [explicit[0]]: explicit[1], ...c.settings } : c.settings);

      // 2. The engine process, asked as the extension asks (picked folder and weights, overrides).
      const engineParams = {
        data: abs(data),
        weights: abs(weights),
        configFile,
        overrides: overrides as never,
        workspaceRoot: w.root,
      };
      const viaEngine = engine.request('train/resolve', engineParams);

      // 3. The extension's path: its config lookup and dataset detection, then the same app function.
      const folder = abs(data) ?? abs(path.resolve(path.dirname(configFile!), c.config!.data as string))!;
      assert.equal(
        findConfigFile(undefined, [folder, w.root]),
        c.configDir === '.' ? configFile : undefined,
        `${c.name}: the extension finds the config the CLI finds`,
      );
      const detected = await detectDataset(folder);
      assert.ok(detected, `${c.name}: the folder picker offers ${folder}`);
      const inProcess = resolveRun({
        configFile,
        layers: [
          { where: 'the folder and weights picked', values: { data: abs(data), weights: abs(weights) } },
          { where: 'overrides', values: overrides },
        ],
        workspaceRoot: w.root,
      });

      const settled = await Promise.allSettled([viaEngine, inProcess]);
      if (configFile) fs.rmSync(configFile); // the next case must not find it
      void settled;
      if (c.code) {
        assert.equal(cli.code, 1, `${c.name}: met train --dry-run fails`);
        assert.match(cli.err, /number of attention heads/);
        // The code, and the width the extension's heads prompt checks its answer against.
        await assert.rejects(
          viaEngine,
          (e: Error & { code?: string; details?: { width?: number } }) => e.code === c.code && e.details?.width === 64,
          c.name,
        );
        await assert.rejects(
          inProcess,
          (e: unknown) => e instanceof UserError && e.code === c.code && e.details?.width === 64,
          c.name,
        );
        continue;
      }
      assert.equal(cli.code, 0, `${c.name}: ${cli.err}`);
      const fromCli = JSON.parse(cli.out) as RunPlan;
      const fromEngine = await viaEngine;
      const fromApp = await inProcess;
      c.expect!(fromCli, w);
      assert.deepEqual(comparable(fromEngine), comparable(fromCli), `${c.name}: engine = CLI`);
      assert.deepEqual(comparable(fromApp), comparable(fromCli), `${c.name}: extension path = CLI`);
      assert.equal(path.dirname(fromCli.config.out!), path.join(w.root, '.met', 'runs'));
      assert.equal(detected.classes.length, fromCli.classes.length, `${c.name}: detection sees the scan's classes`);
      assert.ok(!fs.existsSync(path.join(w.root, '.met')), 'a dry run writes nothing');
    }
  } finally {
    await engine.request('engine/shutdown', {});
  }
});

test("dataset detection follows the engine's rules", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'met-detect-'));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  const touch = (...p: string[]) => {
    fs.mkdirSync(path.join(root, ...p.slice(0, -1)), { recursive: true });
    fs.writeFileSync(path.join(root, ...p), '');
  };
  // validation/ as the val split, images three levels below the class folders, .JPG in capitals.
  touch('a', 'train', 'cat', 'x', 'y', 'z', '1.JPG');
  touch('a', 'train', 'dog', '2.png');
  touch('a', 'validation', 'cat', '3.png');
  // Class folders holding images only deeper down.
  touch('b', 'red', 'deep', '1.webp');
  touch('b', 'blue', 'deeper', 'still', '2.avif');
  touch('b', 'notes', 'readme.txt');
  // val/ with class folders but no train/: the engine refuses it, so it is not offered.
  touch('c', 'val', 'cat', '1.png');
  touch('c', 'val', 'dog', '2.png');
  // One class only.
  touch('d', 'cat', '1.png');
  // Hidden folders do not count.
  touch('e', 'cat', '1.png');
  touch('e', '.dog', '2.png');

  assert.deepEqual(await detectDataset(path.join(root, 'a')), {
    dir: path.join(root, 'a'),
    classes: ['cat', 'dog'],
    images: 2,
    layout: 'split-folders',
    nested: false,
  });
  assert.deepEqual(await detectDataset(path.join(root, 'b')), {
    dir: path.join(root, 'b'),
    classes: ['blue', 'red'],
    images: 2,
    layout: 'class-folders',
    nested: true,
  });
  for (const d of ['c', 'd', 'e']) assert.equal(await detectDataset(path.join(root, d)), undefined, d);
  // Found from the top. The top folder is a dataset by the engine's rules too (a..e hold images
  // somewhere), but only in sub-folders: listed after the datasets inside it. So is b (its class
  // folders hold images only deeper down); its class folders are not datasets (one class each).
  // c/val on its own is two class folders, which the engine trains on as they are.
  assert.deepEqual(
    (await findDatasets([root])).map((c) => path.relative(root, c.dir)),
    ['a', 'c/val', 'b', ''],
  );
  // The engine scan refuses what detection refuses (c: split layout without train/).
  await assert.rejects(scanDataset({ root: path.join(root, 'c') }), /no train\//);
});

test('one image-extension list: the engine, the extension and the standalone example agree', () => {
  // The extension's code has no list of its own (it imports IMAGE_EXTENSIONS)...
  for (const f of ['src/extension/commands.ts', 'src/extension/inspect.ts', 'src/app/dataset.ts']) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    assert.ok(!/['"]\.?tiff['"]/.test(text), `${f} spells out image extensions; import IMAGE_EXTENSIONS instead`);
  }
  // ...and the example, which runs without the project's code, spells out the same one.
  const example = fs.readFileSync(path.join(ROOT, 'examples', 'run-exported.mjs'), 'utf8');
  const m = /const IMAGE_EXT = new Set\(\[([^\]]*)\]\)/.exec(example);
  assert.ok(m, 'examples/run-exported.mjs has its IMAGE_EXT list');
  const listed = [...m[1].matchAll(/'\.([a-z0-9]+)'/g)].map((x) => x[1]);
  assert.deepEqual([...listed].sort(), [...IMAGE_EXTENSIONS].sort());
});
