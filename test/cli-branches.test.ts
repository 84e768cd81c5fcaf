// Exit branches through the command line, as a user runs it: `met params --branch` against
// numbers worked out by hand for ViT-B/16, and a tiny run trained with one branch type per exit
// (sl-vit, conv-project, mlp): its run folder records the branches, `met eval` shows them with
// GFLOPs equal to `met params`, and `met export` + examples/run-exported.mjs (onnxruntime-node
// and sharp only) reproduce `met eval`'s budgeted inference to the sample.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ParamsReport } from '../src/app/params';
import type { ExportManifest } from '../src/engine/export/export';
import { applyThresholds } from '../src/engine/infer/thresholds';
import { metParamShapes } from '../src/engine/model/met';
import { exitScores } from '../src/engine/infer/exitScores';
import {
  chosenOperatingPoint,
  encodeThreshold,
  type RunConfigFile,
  type RunSummary,
  type SplitPredictions,
  type ThresholdsFile,
} from '../src/engine/run/runFolder';
import { readSafetensors } from '../src/engine/weights/safetensors';
import { met, ROOT, TINY, tinyRun, trainBeside } from './tiny-run';

function params(args: string[]): ParamsReport {
  const r = met(['params', ...args, '--json']);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as ParamsReport;
}

const giga = (x: number) => Math.round(x * 1e9);

test('met params --branch: ViT-B/16, exits after 10, 11, 12, C = 100 (counted by hand)', () => {
  const base = ['--backbone', 'vit-b16', '--exits', '10,11,12', '--classes', '100'];
  const lin = params(base);
  const p = params([...base, '--branch', 'conv-project,mlp,sl-vit']);
  const D = 768;
  const C = 100;
  const M = 3072;
  const N = 196;
  const c = 192; // D / 4
  const conv = D * N + N + 9 * (D + 1) * c + c + c * C + C; // projection, conv over D + 1 channels, classifier
  const mlp = D * D + D + D * C + C;
  const slvit = 4 * D * D + 2 * D * M + 11 * D + M + D * C + C;
  assert.deepEqual([conv, mlp, slvit], [1_499_048, 667_492, 7_166_308]);
  assert.deepEqual(p.config.branch, ['conv-project', 'mlp', 'sl-vit']);
  assert.deepEqual(
    p.branches.map((b) => [b.exit, b.layer, b.type, b.params]),
    [
      [1, 10, 'conv-project', conv],
      [2, 11, 'mlp', mlp],
      [3, 12, 'sl-vit', slvit],
    ],
  );
  assert.deepEqual(p.branches[2].widths, { dim: 768, heads: 12, headDim: 64, mlp: 3072, tokens: 197, out: 100 });
  assert.equal(p.heads, conv + mlp + slvit);
  assert.equal(p.met_adapters, lin.met_adapters);
  assert.equal(p.trainable, lin.trainable - 3 * (D * C + C) + conv + mlp + slvit);
  assert.equal(p.stored_trainable, lin.stored_trainable - 3 * (D * C + C) + conv + mlp + slvit);

  // Multiply-adds of each branch alone, and what they do to the cumulative GFLOPs per exit.
  const convMacs = D * N + N * 9 * (D + 1) * c + c * C; // 260,620,416
  const mlpMacs = D * D + D * C; // 666,624
  const slvitMacs = D * D + 2 * 197 * D * D + 2 * 197 * D + D * D + 2 * D * M + D * C; // 238,668,288
  assert.deepEqual(
    p.exits.map((e) => giga(e.branch_gflops)),
    [convMacs, mlpMacs, slvitMacs],
  );
  assert.deepEqual(
    lin.exits.map((e) => giga(e.branch_gflops)),
    [D * C, D * C, D * C],
  );
  assert.equal(giga(p.exits[0].gflops) - giga(lin.exits[0].gflops), convMacs - D * C);
  assert.equal(giga(p.exits[1].segment_gflops) - giga(lin.exits[1].segment_gflops), mlpMacs - D * C);
  // Exit 3's sl-vit reads the patch tokens, so layer 12 runs for all 199 tokens, not just c_3.
  assert.ok(giga(p.exits[2].segment_gflops) - giga(lin.exits[2].segment_gflops) > slvitMacs - D * C + 1e9);

  const txt = met(['params', ...base, '--branch', 'sl-vit']);
  assert.equal(txt.code, 0, txt.err);
  assert.match(txt.out, /sl-vit branches\s+4D² \+ 2DM \+ 11D \+ M \+ DC \+ C\s+3\s+21,498,924/);
  assert.match(txt.out, /branch sl-vit/);

  const bad = met(['params', ...base, '--branch', 'mlp,linear']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /branch: 2 branch types given for 3 exits/);
  const unknown = met(['params', ...base, '--branch', 'transformer']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /field 'branch' must be one of "linear", "mlp", "sl-vit"/);
  const heads = met(['params', ...base, '--branch', 'sl-vit', '--branch-heads', '5']);
  assert.notEqual(heads.code, 0);
  assert.match(heads.err, /branchHeads: 5 heads do not divide the width D = 768/);
});

test('met train --branch: the run records its branches; met eval and met export agree', async () => {
  const t = await tinyRun();
  const branch = ['sl-vit', 'conv-project', 'mlp'];
  const { run, r: tr } = trainBeside(t, 'run-branches', ['--branch', branch.join(','), '--branch-channels', '3']);
  assert.equal(tr.code, 0, tr.err);
  assert.match(tr.out, /sl-vit/);

  // The run folder: settings, MET config, and the branch tensors in trainable.safetensors.
  const cf = JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8')) as RunConfigFile;
  assert.deepEqual(cf.train.branch, branch);
  assert.equal(cf.train.branchChannels, 3);
  assert.deepEqual(cf.met.branch, branch);
  assert.equal(cf.met.branchChannels, 3);
  const w = readSafetensors(path.join(run, 'trainable.safetensors'));
  const shapes = metParamShapes(cf.backbone.config, cf.met);
  assert.deepEqual([...w.keys()].sort(), [...shapes.keys()].sort());
  for (const [n, s] of shapes) assert.deepEqual(w.get(n)!.shape, s, n);
  const G = TINY.imageSize / TINY.patchSize;
  assert.deepEqual(shapes.get('exit.1.attn.qkv.weight'), [3 * TINY.dim, TINY.dim]);
  assert.deepEqual(shapes.get('exit.2.conv.weight'), [3, TINY.dim + 1, 3, 3]);
  assert.deepEqual(shapes.get('exit.2.proj.weight'), [G * G, TINY.dim]);
  assert.deepEqual(shapes.get('exit.3.fc.weight'), [TINY.dim, TINY.dim]);
  // Training moved the branch tensors away from their initial values (LayerNorm weights start at 1).
  assert.ok((w.get('exit.1.norm1.weight')!.data as Float32Array).some((x) => x !== 1));

  // met eval: the branch of each exit, and GFLOPs equal to met params' for the same settings.
  const ev = met(['eval', '--run', run, '--json', '--threads', '1']);
  assert.equal(ev.code, 0, ev.err);
  const summary = JSON.parse(ev.out) as RunSummary;
  assert.deepEqual(
    summary.exits.map((e) => e.branch),
    branch,
  );
  const p = params([
    '--weights',
    t.weights,
    '--heads',
    String(TINY.heads),
    '--classes',
    String(TINY.classes.length),
    '--branch',
    branch.join(','),
    '--branch-channels',
    '3',
  ]);
  assert.deepEqual(
    summary.exits.map((e) => e.gflops),
    p.exits.map((e) => e.gflops),
  );
  const plain = params([
    '--weights',
    t.weights,
    '--heads',
    String(TINY.heads),
    '--classes',
    String(TINY.classes.length),
  ]);
  assert.ok(p.exits[0].gflops > plain.exits[0].gflops, 'the sl-vit branch costs more than a linear head');
  assert.ok(summary.exits.every((e) => Number.isFinite(e.accuracy)));
  const txt = met(['eval', '--run', run, '--threads', '1']);
  assert.equal(txt.code, 0, txt.err);
  assert.match(txt.out, /exit\s+layer\s+branch/);
  assert.match(txt.out, /\n\s+2\s+2\s+conv-project\s/);

  // met export: the exported segments and thresholds reproduce met eval's budgeted inference.
  const out = path.join(t.root, 'export-branches');
  const ex = met(['export', '--run', run, '--out', out]);
  assert.equal(ex.code, 0, ex.err);
  const m = JSON.parse(fs.readFileSync(path.join(out, 'thresholds.json'), 'utf8')) as ExportManifest;
  assert.deepEqual(
    m.segments.map((s) => s.cumulativeGflops),
    summary.exits.map((e) => e.gflops),
  );
  const th = JSON.parse(fs.readFileSync(path.join(run, 'thresholds.json'), 'utf8')) as ThresholdsFile;
  const preds = JSON.parse(fs.readFileSync(path.join(run, 'predictions.json'), 'utf8')) as {
    classes: string[];
    test: SplitPredictions;
  };
  const data = path.join(t.root, 'test-split-branches');
  preds.test.files.forEach((f, i) => {
    const d = path.join(data, preds.classes[preds.test.labels[i]]);
    fs.mkdirSync(d, { recursive: true });
    fs.symlinkSync(f, path.join(d, path.basename(f)));
  });
  // At the chosen point and at one where every exit takes some samples (state handed on).
  const mid = (j: number) => {
    const c = [...preds.test.conf[j]].sort((a, b) => a - b);
    return c[Math.floor(c.length / 2)];
  };
  const op = chosenOperatingPoint(th, 3);
  for (const { used, T, spread } of [
    { used: op.used, T: op.thresholds, spread: false },
    { used: [0, 1, 2], T: [mid(0), mid(1), -Infinity], spread: true },
  ]) {
    const want = applyThresholds(
      exitScores(preds.test, used),
      T,
      used.map((j) => th.gflops[j]),
    );
    if (spread)
      assert.ok(want.exitCounts[0] > 0 && want.exitCounts[1] > 0, `samples leave at every exit: ${want.exitCounts}`);
    const perExit = [0, 1, 2].map((j) => (used.includes(j) ? T[used.indexOf(j)] : Infinity));
    fs.writeFileSync(
      path.join(out, 'thresholds.json'),
      JSON.stringify({ ...m, segments: m.segments.map((s, j) => ({ ...s, threshold: encodeThreshold(perExit[j]) })) }),
    );
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, 'examples', 'run-exported.mjs'), out, data, '--json', '--batch', '5'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { accuracy: number; gflops: number; exitCounts: number[] };
    assert.equal(got.accuracy, want.accuracy);
    const counts = [0, 0, 0];
    used.forEach((j, i) => (counts[j] = want.exitCounts[i]));
    assert.deepEqual(got.exitCounts, counts);
    assert.ok(Math.abs(got.gflops - want.gflops) <= 1e-12 * want.gflops);
  }
});
