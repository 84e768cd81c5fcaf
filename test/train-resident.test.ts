// The GPU-resident train step's AdamW (buildTrainStep's adamW option: the update inside the
// graph, parameters and moments in and out) against the host's AdamW (train/adamw.ts) applied to
// the plain step's gradients: three steps, on onnxruntime's CPU provider so that it runs
// everywhere (test/webgpu-parity.test.ts runs it on WebGPU). And all or nothing: a step whose
// update would not be finite returns ok = 0 and the old values.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { decays, initMetParams, MET_DEFAULTS, type MetConfig } from '../src/engine/model/met';
import { prepareWeights } from '../src/engine/model/vit';
import { Session } from '../src/engine/runtime/session';
import type { HostTensor } from '../src/engine/tensor';
import { AdamW } from '../src/engine/train/adamw';
import { buildTrainStep, fusedAdamWScalars, residentHostState } from '../src/engine/train/trainer';
import { loadBackbone } from '../src/engine/weights';
import { rng } from './helpers';

const FIX = path.join(__dirname, 'fixtures');

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: 'float32', shape, data });
const scalar = (v: number) => f32([1], Float32Array.of(v));

test('the in-graph AdamW equals the host AdamW over three steps; a non-finite update changes nothing', async () => {
  const { tensors, config: cfg } = loadBackbone(path.join(FIX, 'tv_b.safetensors'), { overrides: { heads: 4 } });
  const w = prepareWeights(cfg, tensors);
  const met: MetConfig = { ...MET_DEFAULTS, exits: [1, 2, cfg.depth], rank: 4, lambda: 0.5, numClasses: 3 };
  const init = initMetParams(cfg, met, 3);
  const r = rng(7);
  const B = 4;
  const feeds: Record<string, HostTensor> = {
    images: f32(
      [B, cfg.channels, cfg.imageSize, cfg.imageSize],
      Float32Array.from({ length: B * cfg.channels * cfg.imageSize ** 2 }, () => r() * 2 - 1),
    ),
    labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from({ length: B }, (_, i) => BigInt(i % 3)) },
  };
  const host = new AdamW({ lr: 0.01, weightDecay: 0.05 }, decays);
  const a = { beta1: host.beta1, beta2: host.beta2, eps: host.eps, weightDecay: host.weightDecay, decay: decays };
  const plain = buildTrainStep(cfg, w, met, init, { cpuOnly: false });
  const fused = buildTrainStep(cfg, w, met, init, { cpuOnly: false, adamW: a });
  const sPlain = await Session.create(plain.model, { threads: 1 });
  const sFused = await Session.create(fused.model, { threads: 1 });
  const names = plain.names;
  const hostParams = new Map(names.map((n) => [n, Float32Array.from(init.get(n)!.data as Float32Array)]));
  let state: Record<string, HostTensor> = residentHostState(
    init,
    new Map(names.map((n) => [n, Float32Array.from(init.get(n)!.data as Float32Array)])),
  );
  const lrs = [0.01, 0.008, 0.005];
  for (const [i, lr] of lrs.entries()) {
    const t = i + 1;
    const g = await sPlain.run({
      ...feeds,
      ...Object.fromEntries(names.map((n) => [n, f32(init.get(n)!.shape, hostParams.get(n)!)])),
    });
    assert.equal(host.step(hostParams, new Map(names.map((n) => [n, g[`grad.${n}`].data as Float32Array])), lr), null);
    const out = await sFused.run({
      ...feeds,
      ...state,
      ...fusedAdamWScalars(lr, t, a),
    });
    assert.equal(Number(out.ok.data[0]), 1);
    assert.ok(Math.abs(Number(out.loss.data[0]) - Number(g.loss.data[0])) <= 1e-5 * Math.abs(Number(g.loss.data[0])));
    state = Object.fromEntries(Object.keys(state).map((k) => [k, out[`new.${k}`]]));
    let worst = 0;
    for (const n of names) {
      for (const [mine, theirs] of [
        [state[n].data, hostParams.get(n)!],
        [state[`m.${n}`].data, host.state.m.get(n)!],
        [state[`v.${n}`].data, host.state.v.get(n)!],
      ] as [Float32Array, Float32Array][]) {
        let scale = 1e-12;
        for (const x of theirs) scale = Math.max(scale, Math.abs(x));
        for (let j = 0; j < theirs.length; j++) worst = Math.max(worst, Math.abs(mine[j] - theirs[j]) / scale);
      }
    }
    // Step 1 from the same gradients: float32 rounding only. Later steps start from parameters
    // that differ by that rounding, and the gradients of the exit diagonals (sums over many
    // terms) carry it up to ~5e-5; a wrong formula (bias correction, decay) is off by O(1).
    const tol = t === 1 ? 1e-5 : 2e-4;
    assert.ok(
      worst < tol,
      `step ${t}: in-graph and host AdamW differ by ${worst} (relative to each tensor's largest value)`,
    );
  }

  // An update that overflows float32 (a learning rate of 1e38): ok = 0, and every output is its input.
  const out = await sFused.run({
    ...feeds,
    ...state,
    lr: scalar(1e38),
    step_size: scalar(1e38),
    sqrt_bc2: scalar(1),
  });
  assert.equal(Number(out.ok.data[0]), 0);
  for (const k of Object.keys(state)) assert.deepEqual(out[`new.${k}`].data, state[k].data, `new.${k} changed`);
  await sPlain.release();
  await sFused.release();
});
