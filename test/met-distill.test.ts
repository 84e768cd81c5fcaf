// Copycat distillation (src/engine/model/distill.ts): the loss and its gradient against a direct
// float64 computation on random logits at several temperatures, the teacher's detachment, the
// settings (flags, config file, validation) and a tiny run trained with it end to end. The full
// MET loss with distillation against PyTorch autograd is in met-grad.test.ts (met_distill*).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { grad } from '../src/engine/graph/grad';
import { Graph } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { copycatTerms, distillationLoss, validateDistill } from '../src/engine/model/distill';
import { metConfigOf } from '../src/engine/run/config';
import type { RunConfigFile } from '../src/engine/run/runFolder';
import { resolveConfig, validateConfig } from '../src/engine/run/schema';
import { Session } from '../src/engine/runtime/session';
import type { HostTensor } from '../src/engine/tensor';
import type { TrainEvent } from '../src/engine/train/trainer';
import { rng } from './helpers';
import { met, tinyRun } from './tiny-run';

/** T² · mean_b KL(softmax(t_b / T) ‖ softmax(z_b / T)) and its gradient w.r.t. z, in float64. */
function reference(
  z: Float64Array,
  t: Float64Array,
  B: number,
  C: number,
  T: number,
): { loss: number; dz: Float64Array } {
  const logSoftmax = (x: Float64Array, b: number) => {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, x[b * C + c] / T);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(x[b * C + c] / T - m);
    const lse = m + Math.log(s);
    return Array.from({ length: C }, (_, c) => x[b * C + c] / T - lse);
  };
  let loss = 0;
  const dz = new Float64Array(B * C);
  for (let b = 0; b < B; b++) {
    const lp = logSoftmax(t, b);
    const lq = logSoftmax(z, b);
    for (let c = 0; c < C; c++) {
      const p = Math.exp(lp[c]);
      loss += p * (lp[c] - lq[c]);
      // d/dz of T² KL / B = T² (q - p) / (T B)
      dz[b * C + c] = (T * (Math.exp(lq[c]) - p)) / B;
    }
  }
  return { loss: (T * T * loss) / B, dz };
}

async function engine(z: Float32Array, t: Float32Array, B: number, C: number, T: number) {
  const g = new Graph();
  const zs = g.input('student', ['B', C]);
  const zt = g.input('teacher', ['B', C]);
  const L = distillationLoss(g, zs, zt, T);
  const [dz, dt] = grad(L, [zs, zt]);
  const s = await Session.create(compile(g, { loss: L, dz, dt }), { threads: 1 });
  try {
    const feed = (d: Float32Array): HostTensor => ({ dtype: 'float32', shape: [B, C], data: d });
    const r = await s.run({ student: feed(z), teacher: feed(t) });
    return { loss: Number(r.loss.data[0]), dz: r.dz.data as Float32Array, dt: r.dt.data as Float32Array };
  } finally {
    await s.release();
  }
}

for (const T of [0.5, 1, 2, 3.7, 10]) {
  test(`distillation loss and gradient = direct float64 computation, T = ${T}`, async () => {
    const r = rng(Math.round(T * 1000));
    const B = 5;
    const C = 7;
    const normal = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    // Logits of the size trained heads give (some confident rows), stored as float32 for both sides.
    const z = Float32Array.from({ length: B * C }, () => 3 * normal());
    const t = Float32Array.from({ length: B * C }, () => 4 * normal());
    const want = reference(Float64Array.from(z), Float64Array.from(t), B, C, T);
    const got = await engine(z, t, B, C, T);
    assert.ok(want.loss > 0.01, `a non-trivial case (KL ${want.loss})`);
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-5 * Math.max(1, want.loss), `loss ${got.loss} vs ${want.loss}`);
    const scale = Math.max(...Array.from(want.dz, Math.abs));
    for (let i = 0; i < B * C; i++)
      assert.ok(Math.abs(got.dz[i] - want.dz[i]) <= 1e-6 + 1e-5 * scale, `d/dz[${i}] ${got.dz[i]} vs ${want.dz[i]}`);
    // The teacher (the final exit) is detached: no gradient reaches it through the KD term.
    assert.ok(
      got.dt.every((x) => x === 0),
      'teacher gradient must be zero',
    );
  });
}

test('distillation: zero (with zero gradient) when an exit already copies the final exit, finite on extreme logits', async () => {
  const B = 3;
  const C = 4;
  const same = Float32Array.from([1, -2, 0.5, 3, 0, 0, 0, 0, 9, -9, 4, 1]);
  const a = await engine(same, same, B, C, 2);
  assert.ok(Math.abs(a.loss) < 1e-6, `KL(p‖p) = ${a.loss}`);
  assert.ok(a.dz.every((x) => Math.abs(x) < 1e-7));
  // Logits of ±80 at T = 0.5 (exp(160) overflows float32): log-softmax keeps it finite and exact.
  const z = Float32Array.from([80, -80, 0, 1, -80, 80, 0, 1, 0, 0, 0, 0]);
  const t = Float32Array.from([-80, 80, 0, 1, -80, 80, 0, 1, 80, 0, 0, 0]);
  const want = reference(Float64Array.from(z), Float64Array.from(t), B, C, 0.5);
  const got = await engine(z, t, B, C, 0.5);
  assert.ok(
    Number.isFinite(got.loss) && Math.abs(got.loss - want.loss) <= 1e-5 * want.loss,
    `${got.loss} vs ${want.loss}`,
  );
});

test('copycatTerms: one KD term per early exit, none when off or with one exit; C = 1 is refused', () => {
  const g = new Graph();
  const logits = [0, 1, 2].map((j) => g.input(`l${j}`, ['B', 5]));
  assert.equal(copycatTerms(g, { distill: 0.5 }, logits).length, 2);
  assert.equal(copycatTerms(g, { distill: 0 }, logits).length, 0);
  assert.equal(copycatTerms(g, {}, logits).length, 0);
  assert.equal(copycatTerms(g, { distill: 1 }, logits.slice(0, 1)).length, 0);
  const one = [g.input('r0', ['B', 1]), g.input('r1', ['B', 1])];
  assert.throws(() => copycatTerms(g, { distill: 1 }, one), /distill: .*needs class logits/);
});

test('distill settings: flags and config file, recorded in the MET config only when on; errors name the field', () => {
  const base = { data: 'd', weights: 'w.safetensors' };
  const off = resolveConfig(base, {});
  assert.equal(off.distill, 0);
  assert.equal(off.distillTemperature, 2);
  const mOff = metConfigOf(off, [1, 2], 3);
  assert.ok(
    !('distill' in mOff) && !('distillTemperature' in mOff),
    'runs without copycat keep the MET config they had',
  );
  const on = resolveConfig(base, validateConfig({ distill: 0.5, distillTemperature: 3 }, 'command line'));
  assert.deepEqual([metConfigOf(on, [1, 2], 3).distill, metConfigOf(on, [1, 2], 3).distillTemperature], [0.5, 3]);
  assert.throws(
    () => validateConfig({ distill: -1 }, 'met.config.json'),
    /met\.config\.json: field 'distill' must be a number in \[0, inf\]/,
  );
  assert.throws(
    () => validateDistill({ distill: 1, distillTemperature: 0 }, 10),
    /distillTemperature must be a positive number, got 0/,
  );
  assert.throws(() => validateDistill({ distill: 1 }, 1), /distill: .*at least 2 classes/);
  validateDistill({ distill: 0 }, 1); // off: nothing to check against the task
});

test('met train --distill: config.json records it, metrics.jsonl carries the KD loss per early exit; T = 0 is refused', async () => {
  const tiny = await tinyRun();
  const out = path.join(tiny.root, 'run-distill');
  const flags = tiny.trainFlags; // one epoch, one thread
  const r = met([
    'train',
    '--data',
    tiny.data,
    '--weights',
    tiny.weights,
    ...flags,
    '--exits',
    '1,2,3',
    '--lambda',
    '0',
    '--distill',
    '0.5',
    '--distill-temperature',
    '3',
    '--out',
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  const cf = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as RunConfigFile;
  assert.equal(cf.train.distill, 0.5);
  assert.equal(cf.train.distillTemperature, 3);
  assert.equal(cf.met.distill, 0.5);
  assert.equal(cf.met.distillTemperature, 3);
  const events = fs
    .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as TrainEvent);
  const steps = events.filter((e): e is Extract<TrainEvent, { type: 'step' }> => e.type === 'step');
  assert.ok(steps.length > 0);
  for (const e of steps) {
    assert.equal(e.distill?.length, 2, 'one KD value per early exit');
    assert.ok(
      e.distill!.every((x) => Number.isFinite(x) && x >= 0),
      `KD ${e.distill}`,
    );
    assert.equal(e.gr.length, 0, 'lambda 0: no graph regularization');
    // loss = Σ CE + w Σ KD (float32 sums of the printed parts)
    const total = e.lossPerExit.reduce((a, b) => a + b, 0) + 0.5 * e.distill!.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(e.loss - total) <= 1e-4 * Math.max(1, total), `loss ${e.loss} vs ${total}`);
  }
  // The default run (no --distill) has no KD in its events or MET config.
  const plain = JSON.parse(fs.readFileSync(path.join(tiny.run, 'config.json'), 'utf8')) as RunConfigFile;
  assert.equal(plain.met.distill, undefined);
  const plainStep = fs
    .readFileSync(path.join(tiny.run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .find((l) => l.includes('"type":"step"'));
  assert.ok(plainStep && !('distill' in JSON.parse(plainStep)));

  const bad = met([
    'train',
    '--data',
    tiny.data,
    '--weights',
    tiny.weights,
    ...flags,
    '--distill',
    '1',
    '--distill-temperature',
    '0',
    '--out',
    path.join(tiny.root, 'run-bad'),
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /distillTemperature must be a positive number, got 0/);
});
