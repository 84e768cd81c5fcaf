// "MET: Run ablation study" in the real extension host: the command runs `met ablate` (the
// bundled CLI) on the test images and the tiny ViT, reports progress per run, and returns the
// study's table; the same command after a Cancel continues the study (finished runs kept).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, met, waitFor, workspaceDir, writeConfig } from '../fixtures';

interface AblationResult {
  study: string;
  status: string;
  result?: {
    runs: {
      variant: string;
      run: string;
      mean: number;
      exits: { layer: number; accuracy: number; gflops: number }[];
    }[];
  };
  error?: string;
}

suite('MET ablation study', () => {
  suiteSetup(async function () {
    this.timeout(60_000);
    await activate();
  });

  test('runs the study through the CLI; its table equals met eval --json of each run', async function () {
    this.timeout(300_000);
    const configFile = writeConfig('ablate', 'met.config.json', { exits: [3, 6] });
    const study = path.join(workspaceDir(), '.met', 'studies', 'host-test');
    const r = await vscode.commands.executeCommand<AblationResult>('met.runAblation', {
      configFile,
      variants: ['met', 'no_gr', 'linear_probe'],
      out: study,
      confirm: false,
    });
    assert.equal(r.status, 'done', r.error);
    assert.equal(r.study, study);
    assert.deepEqual(
      r.result!.runs.map((x) => x.variant),
      ['met', 'no_gr', 'linear_probe'],
    );
    for (const run of r.result!.runs) {
      assert.equal(path.dirname(run.run), study);
      const e = await met(['eval', '--run', run.run, '--json'], workspaceDir());
      assert.equal(e.code, 0, e.stderr);
      const ev = JSON.parse(e.stdout) as { exits: { layer: number; accuracy: number; gflops: number }[] };
      assert.deepEqual(
        run.exits.map((x) => [x.layer, x.accuracy, x.gflops]),
        ev.exits.map((x) => [x.layer, x.accuracy, x.gflops]),
      );
    }
    assert.ok(fs.existsSync(path.join(study, 'comparison.csv')));
    // The study's runs are in the Runs view, named with their study.
    await waitFor('the study runs in the Runs view', async () => {
      const items =
        await vscode.commands.executeCommand<{ dir: string; label: string; status: string }[]>('met.runs.snapshot');
      const mine = items.filter((i) => path.dirname(i.dir) === study && i.status === 'done').map((i) => i.label);
      return mine.sort().join(',') === 'host-test / linear_probe,host-test / met,host-test / no_gr';
    });
  });

  test('Cancel stops the study after a checkpoint; running it again keeps what was finished', async function () {
    this.timeout(300_000);
    const configFile = writeConfig('ablate-cancel', 'met.config.json', { exits: [3, 6], epochs: 100 });
    const study = path.join(workspaceDir(), '.met', 'studies', 'host-cancel');
    const args = { configFile, variants: ['no_gr', 'met'], out: study, confirm: false };
    const first = vscode.commands.executeCommand<AblationResult>('met.runAblation', args);
    // Once the second run has a checkpoint, cancel the way the notification's Cancel does:
    // the CLI gets SIGTERM and stops after its step.
    await waitFor(
      'the second run to checkpoint',
      () => fs.existsSync(path.join(study, 'met', 'checkpoint.safetensors')),
      240_000,
    );
    const pid = JSON.parse(fs.readFileSync(path.join(study, 'met', 'run.lock'), 'utf8')).pid as number;
    process.kill(pid, 'SIGTERM');
    const r = await first;
    assert.equal(r.status, 'stopped', r.error);
    const kept = fs.statSync(path.join(study, 'no_gr', 'trainable.safetensors')).mtimeMs;
    const again = await vscode.commands.executeCommand<AblationResult>('met.runAblation', args);
    assert.equal(again.status, 'done', again.error);
    assert.equal(fs.statSync(path.join(study, 'no_gr', 'trainable.safetensors')).mtimeMs, kept);
    assert.deepEqual(
      again.result!.runs.map((x) => x.variant),
      ['no_gr', 'met'],
    );
  });
});
