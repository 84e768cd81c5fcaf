// Divergence keeps a usable checkpoint (issue 11, finding 5): a step whose loss or update is not
// finite never reaches the parameters or the AdamW moments, the checkpoint written before it
// resumes with a lower --lr and trains to the end, and the message says which checkpoint exists.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AdamW } from '../src/engine/train/adamw';
import { readSafetensors, readSafetensorsFile, writeSafetensors } from '../src/engine/weights/safetensors';
import { met, tinyRun } from './tiny-run';

const flags = (lr: string, epochs = '4') => [
  '--heads',
  '2',
  '--epochs',
  epochs,
  '--batch',
  '8',
  '--lr',
  lr,
  '--warmup-epochs',
  '0',
  '--threads',
  '1',
];

function allFinite(file: string): void {
  for (const [k, t] of readSafetensors(file))
    assert.ok(
      (t.data as Float32Array).every((x) => Number.isFinite(x)),
      `${path.basename(file)}: tensor ${k} holds a non-finite value`,
    );
}

test('AdamW.step refuses a non-finite gradient or update and leaves parameters, moments and step unchanged', () => {
  const opt = new AdamW({ lr: 0.1 });
  const p = new Map([['w', Float32Array.from([1, 2])]]);
  assert.equal(opt.step(p, new Map([['w', Float32Array.from([0.5, -0.5])]]), 0.1), null);
  const before = {
    p: Array.from(p.get('w')!),
    m: Array.from(opt.state.m.get('w')!),
    v: Array.from(opt.state.v.get('w')!),
  };
  for (const g of [
    [NaN, 0],
    [0, Infinity],
    [1e30, 0], // finite in float32, but its square overflows the second moment
  ]) {
    const bad = opt.step(p, new Map([['w', Float32Array.from(g)]]), 0.1);
    assert.match(bad ?? '', /'w'/);
    assert.equal(opt.state.step, 1);
    assert.deepEqual(Array.from(p.get('w')!), before.p);
    assert.deepEqual(Array.from(opt.state.m.get('w')!), before.m);
    assert.deepEqual(Array.from(opt.state.v.get('w')!), before.v);
  }
  // A learning rate that would overflow the parameter is refused too.
  assert.match(opt.step(p, new Map([['w', Float32Array.from([1, 1])]]), 1e39) ?? '', /update of 'w'/);
  assert.deepEqual(Array.from(p.get('w')!), before.p);
});

test('met train: a diverged run keeps a finite checkpoint that --resume with a lower --lr trains to the end', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'diverge');
  // The graph regularization of the defaults before issue 13 (raw cosines, lambda 0.01): at lr 10
  // it makes the tiny run diverge in its second epoch, after the first checkpoint, which is the
  // case this test needs (the current defaults diverge before any checkpoint).
  const gr = ['--lambda', '0.01', '--sim-clamp', 'none'];
  const a = met(['train', '--data', t.data, '--weights', t.weights, ...flags('10'), ...gr, '--out', run]);
  assert.notEqual(a.code, 0, 'lr 10 was expected to diverge on the tiny run');
  const m = /not finite at step (\d+) .*the checkpoint of step (\d+) \(written before the failure\)/.exec(a.err);
  assert.ok(m, a.err);
  assert.ok(Number(m[2]) < Number(m[1]), a.err);
  assert.doesNotMatch(a.err, /\n\s+at /, 'no stack trace');
  allFinite(path.join(run, 'checkpoint.safetensors'));
  const b = met(['train', '--resume', run, '--lr', '0.001']);
  assert.equal(b.code, 0, b.err);
  allFinite(path.join(run, 'trainable.safetensors'));
  const steps = fs
    .readFileSync(path.join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; step: number; loss?: number })
    .filter((e) => e.type === 'step');
  assert.equal(steps[steps.length - 1].step, 24);
  assert.ok(steps.every((e) => Number.isFinite(e.loss)));
});

test('met train: a run that diverges before its first checkpoint says there is none', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'diverge-early');
  const a = met(['train', '--data', t.data, '--weights', t.weights, ...flags('1e6'), '--out', run]);
  assert.notEqual(a.code, 0);
  assert.match(a.err, /not finite at step \d+ \(epoch 1\).*no checkpoint was written before it/);
  assert.doesNotMatch(a.err, /last good checkpoint/);
  assert.ok(!fs.existsSync(path.join(run, 'checkpoint.safetensors')));
});

test('met train --resume refuses, by name, a checkpoint whose moments are not finite (saved by a diverged run)', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'inf-moments');
  const a = met(['train', '--data', t.data, '--weights', t.weights, ...flags('0.01', '1'), '--out', run]);
  assert.equal(a.code, 0, a.err);
  // What a run diverged before this check kept: +Inf in a second moment.
  const file = path.join(run, 'checkpoint.safetensors');
  const ck = readSafetensorsFile(file);
  const name = [...ck.tensors.keys()].find((k) => k.startsWith('v.'))!;
  (ck.tensors.get(name)!.data as Float32Array)[0] = Infinity;
  writeSafetensors(file, ck.tensors, ck.metadata);
  const b = met(['train', '--resume', run, '--epochs', '2', '--lr', '0']);
  assert.notEqual(b.code, 0);
  assert.match(b.err, new RegExp(`tensor '${name.replace(/[.]/g, '\\.')}' holds values that are not finite`));
  assert.doesNotMatch(b.err, /\n\s+at /, 'no stack trace');
});
