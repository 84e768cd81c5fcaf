// Trainings outlive their window (issue 11), in a real VS Code host: run by
// `run-suite.mjs --reload`, which runs this file twice, before and after a window reload.
//
// Window 1 starts a fine-tune through met.fineTune (no UI), waits for a few steps and reloads the
// window (workbench.action.reloadWindow) mid-training, after writing MET_TEST_RELOAD_FILE.
// Window 2 (the same suite, after the reload):
// - finds the training by its run.lock and re-attaches: the status bar follows it, Cancel would
//   reach it, and it finishes with the same weights as an uninterrupted run of the same settings
//   (trained with the CLI for the comparison);
// - a training whose process is killed shows in the Runs view as stopped, with Resume, within
//   5 s; Resume (the view's command) finishes it to the same weights.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MetApi } from '../../../src/extension';
import type { FineTuneResult } from '../../../src/extension/commands';
import type { TrainingState } from '../../../src/extension/trainingEvents';
import { backbone, dataDir, EXTENSION_ID, met, waitFor, workspaceDir } from '../fixtures';

const RELOAD_FILE = process.env.MET_TEST_RELOAD_FILE!;
/** Long enough to be mid-training at the reload (a step of the tiny ViT takes ~20-50 ms here). */
const SETTINGS = { batch: 8, threads: 1, lr: 0.005, warmupEpochs: 0, epochs: 40 };

interface Reloaded {
  runDir: string;
  pid: number;
  step: number;
  reloadedAt: number;
}

async function metApi(): Promise<MetApi> {
  const ext = vscode.extensions.getExtension<MetApi>(EXTENSION_ID);
  assert.ok(ext, `${EXTENSION_ID} is not installed in this host`);
  return ext.activate();
}

function lastStep(runDir: string): number {
  const f = path.join(runDir, 'metrics.jsonl');
  if (!fs.existsSync(f)) return 0;
  const steps = fs.readFileSync(f, 'utf8').match(/"type":"step".*?"step":(\d+)/g) ?? [];
  return steps.length ? Number(/(\d+)$/.exec(steps[steps.length - 1])![1]) : 0;
}

/** The weights of an uninterrupted run with the run's own settings, trained by the CLI. */
let reference: Promise<Buffer> | undefined;
function referenceWeights(runDir: string): Promise<Buffer> {
  reference ??= (async () => {
    const train = (JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as { train: object }).train;
    const dir = path.join(workspaceDir(), 'reference');
    fs.mkdirSync(dir, { recursive: true });
    const out = path.join(dir, 'run');
    fs.writeFileSync(path.join(dir, 'met.config.json'), JSON.stringify({ ...train, out }));
    const r = await met(['train', '--config', path.join(dir, 'met.config.json')], dir, 600_000);
    assert.equal(r.code, 0, r.stderr);
    return fs.readFileSync(path.join(out, 'trainable.safetensors'));
  })();
  return reference;
}

/** met.fineTune without UI, returning once the training has started (its pid known). */
async function startFineTune(): Promise<FineTuneResult & { pid: number }> {
  const started = await vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', {
    folder: dataDir(),
    weights: backbone(),
    overrides: SETTINGS,
    confirm: false,
    wait: false,
  });
  assert.ok(started?.pid, JSON.stringify(started));
  return started as FineTuneResult & { pid: number };
}

function ended(api: MetApi, runDir: string): Promise<TrainingState> {
  return new Promise((resolve) => {
    const sub = api.onDidChangeTrainingState((s) => {
      if (path.resolve(s.runDir) !== path.resolve(runDir) || s.status === 'starting' || s.status === 'running') return;
      sub.dispose();
      resolve(s);
    });
  });
}

interface Item {
  dir: string;
  status: string;
  contextValue: string;
  tooltip: string;
}
const itemOf = async (dir: string) =>
  (await vscode.commands.executeCommand<Item[]>('met.runs.snapshot')).find((i) => i.dir === dir);

if (!fs.existsSync(RELOAD_FILE)) {
  suite('window reload mid-training (before the reload)', () => {
    test('start a fine-tune, then reload the window while it trains', async function () {
      this.timeout(240_000);
      const api = await metApi();
      const started = await startFineTune();
      await waitFor('a few steps before the reload', () => lastStep(started.runDir) >= 5, 180_000, 50);
      assert.equal(api.engines.training(started.runDir)?.active, true);
      const r: Reloaded = {
        runDir: started.runDir,
        pid: started.pid,
        step: lastStep(started.runDir),
        reloadedAt: Date.now(),
      };
      fs.writeFileSync(RELOAD_FILE, JSON.stringify(r));
      await vscode.commands.executeCommand('workbench.action.reloadWindow');
      // This extension host ends with the reload; the suite runs again in the new window.
      await new Promise(() => undefined);
    });
  });
} else {
  suite('window reload mid-training (after the reload)', () => {
    let api: MetApi;
    const before = JSON.parse(fs.readFileSync(RELOAD_FILE, 'utf8')) as Reloaded;

    suiteSetup(async () => {
      api = await metApi();
    });

    test('the reloaded window re-attaches to the training, follows it live, and it finishes with the weights of an uninterrupted run', async function () {
      this.timeout(600_000);
      // The training went on through the reload: its process is the one window 1 started.
      const t = await waitFor('the training to be re-attached', () => api.engines.training(before.runDir), 20_000);
      assert.equal(t.attached, true);
      assert.equal(t.pid, before.pid);
      const done = ended(api, before.runDir);
      const reattachedAfter = Date.now() - before.reloadedAt;
      // Live: the status bar shows its progress, from steps made after the reload.
      await waitFor('the status bar to follow it', () => /MET epoch \d+\/40/.test(api.statusBarText()), 20_000, 50);
      assert.ok(lastStep(before.runDir) > before.step, 'no step was made after the reload');
      const ref = referenceWeights(before.runDir);
      const s = await done;
      assert.equal(s.status, 'done', s.error);
      assert.ok(fs.existsSync(path.join(before.runDir, 'summary.json')));
      assert.ok(
        fs.readFileSync(path.join(before.runDir, 'trainable.safetensors')).equals(await ref),
        'the weights differ from an uninterrupted run',
      );
      assert.equal(api.statusBarText(), '');
      console.log(
        `${process.env.MET_TEST_OUTPUT_MARKER ?? ''}      re-attached ${reattachedAfter} ms after the reload`,
      );
    });

    test('a killed training shows as stopped with Resume within 5 s; Resume finishes it to the same weights', async function () {
      this.timeout(600_000);
      const started = await startFineTune();
      const runDir = started.runDir;
      // Past the first epoch's checkpoint (4 classes x 12 images: 5 steps of 8 per epoch).
      await waitFor(
        'the first checkpoint',
        () => fs.existsSync(path.join(runDir, 'checkpoint.safetensors')) && lastStep(runDir) >= 7,
        180_000,
        50,
      );
      process.kill(started.pid, 'SIGKILL');
      const t0 = Date.now();
      const item = await waitFor(
        'the killed run to show as stopped',
        async () => {
          const i = await itemOf(runDir);
          return i?.status === 'stopped' ? i : undefined;
        },
        20_000,
        100,
      );
      const shownAfter = Date.now() - t0;
      assert.ok(shownAfter < 5000, `stopped shown ${shownAfter} ms after the kill`);
      assert.equal(item.contextValue, 'metRunResumable', 'no Resume for the stopped run');
      assert.match(item.tooltip, /ended without finishing/);
      const done = ended(api, runDir);
      await vscode.commands.executeCommand('met.runs.resume', runDir);
      const s = await done;
      assert.equal(s.status, 'done', s.error);
      assert.ok(
        fs.readFileSync(path.join(runDir, 'trainable.safetensors')).equals(await referenceWeights(before.runDir)),
        'the resumed weights differ from an uninterrupted run',
      );
      console.log(`${process.env.MET_TEST_OUTPUT_MARKER ?? ''}      stopped shown ${shownAfter} ms after the kill`);
    });
  });
}
