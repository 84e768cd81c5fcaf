// Exit branches (src/engine/model/branches.ts) on a small backbone (tv_b: D 32, a 6x6 patch grid,
// 4 heads, MLP 64; 7 classes): output shapes, trainable names and initial values, the im2col
// convolution against a direct loop, and parameter and multiply-add counts against values worked
// out by hand, against the torch modules of the reference (fixture sidecars) and against the
// graphs the engine runs. Loss and gradients against PyTorch: test/met-grad.test.ts.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { segmentAndBranchMacs, segmentMacs } from '../src/engine/export/costs';
import { metParams, vitParamCount } from '../src/engine/infer/params';
import {
  branchDims,
  branchMacs,
  branchParamCount,
  branchSpec,
  branchSpecs,
  branchTypes,
  conv3x3,
  validateBranches,
} from '../src/engine/model/branches';
import { BRANCH_TYPES, type BranchType } from '../src/engine/settings';
import type { VitConfig } from '../src/engine/model/config';
import {
  decays,
  initMetParams,
  MET_DEFAULTS,
  type MetConfig,
  metForward,
  metLoss,
  metParamShapes,
  MetTensors,
} from '../src/engine/model/met';
import { upgradeMetConfig } from '../src/engine/run/config';
import { prepareWeights, VitParams } from '../src/engine/model/vit';
import { Session } from '../src/engine/runtime/session';
import type { HostTensor } from '../src/engine/tensor';
import { loadBackbone } from '../src/engine/weights';
import { readSafetensors } from '../src/engine/weights/safetensors';
import { maxAbsDiff, rng } from './helpers';

const FIX = path.join(__dirname, 'fixtures');
const D = 32;
const C = 7;
const G = 6;
const N = G * G;
const M = 64;

function backbone(): { cfg: VitConfig; w: Map<string, HostTensor>; input: HostTensor } {
  const { tensors, config } = loadBackbone(path.join(FIX, 'tv_b.safetensors'), { overrides: { heads: 4 } });
  const golden = readSafetensors(path.join(FIX, 'tv_b.golden.safetensors'));
  return { cfg: config, w: prepareWeights(config, tensors), input: golden.get('input')! };
}

const metCfg = (over: Partial<MetConfig>): MetConfig => ({ ...MET_DEFAULTS, exits: [1, 2, 3], numClasses: C, ...over });

// ---------------------------------------------------------------- hand-computed values

/** Parameters of one branch with the default widths (h = D, c = D/4 = 8, 4 heads, MLP 64). */
const PARAMS: Record<BranchType, number> = {
  linear: D * C + C, // 231
  mlp: D * D + D + D * C + C, // 1056 + 231 = 1287
  // 3 LayerNorms 6D, q/k/v 3D² + 3D, proj D² + D, MLP 2DM + M + D, classifier DC + C
  'sl-vit': 6 * D + 3 * D * D + 3 * D + D * D + D + 2 * D * M + M + D + D * C + C, // 8839
  'conv-ignore': 9 * D * 8 + 8 + 8 * C + C, // 2375
  'conv-add': 9 * D * 8 + 8 + 8 * C + C, // 2375
  'conv-project': D * N + N + 9 * (D + 1) * 8 + 8 + 8 * C + C, // 1188 + 2384 + 63 = 3635
};

/** Multiply-adds per image of one branch (fvcore: matrix products, 1 MAC = 1 FLOP). */
const MACS: Record<BranchType, number> = {
  linear: D * C, // 224
  mlp: D * D + D * C, // 1248
  // one query (D²), keys and values of 37 tokens (2·37·D²), q·k and a·v over 37 keys (2·37·D),
  // the output projection of one token (D²), its MLP (2DM), the classifier (DC)
  'sl-vit': D * D + 2 * 37 * D * D + 2 * 37 * D + D * D + 2 * D * M + D * C, // 84512
  'conv-ignore': N * 9 * D * 8 + 8 * C, // 83000
  'conv-add': N * 9 * D * 8 + 8 * C, // 83000
  'conv-project': D * N + N * 9 * (D + 1) * 8 + 8 * C, // 86744
};

test('hand-computed values (the numbers the other tests use)', () => {
  assert.deepEqual(Object.values(PARAMS), [231, 1287, 8839, 2375, 2375, 3635]);
  assert.deepEqual(Object.values(MACS), [224, 1248, 84512, 83000, 83000, 86744]);
});

// ---------------------------------------------------------------- shapes, names, values

test('every branch: logits [B, C], classifier input [B, F], a finite loss', async () => {
  const { cfg, w, input } = backbone();
  const F: Record<BranchType, number> = {
    linear: D,
    mlp: D,
    'sl-vit': D,
    'conv-ignore': 8,
    'conv-add': 8,
    'conv-project': 8,
  };
  for (const variant of ['met', 'linear_probe'] as const)
    for (const t of BRANCH_TYPES) {
      const m = metCfg({ variant, branch: t });
      const g = new Graph();
      const P = new VitParams(g, w);
      const T = new MetTensors(g, initMetParams(cfg, m, 1), true);
      const f = metForward(g, P, T, cfg, m, g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]));
      const L = metLoss(g, m, f, g.input('labels', ['B'], 'int64'));
      const outs: Record<string, Tensor> = { loss: L.loss };
      f.logits.forEach((x, j) => (outs[`l${j}`] = x));
      f.features.forEach((x, j) => (outs[`z${j}`] = x));
      const s = await Session.create(compile(g, outs), { threads: 1 });
      const feeds: Record<string, HostTensor> = {
        images: input,
        labels: { dtype: 'int64', shape: [4], data: BigInt64Array.from([0n, 1n, 2n, 1n]) },
      };
      for (const n of T.inputs.keys()) feeds[n] = T.values.get(n)!;
      const r = await s.run(feeds);
      await s.release();
      for (let j = 0; j < 3; j++) {
        assert.deepEqual(r[`l${j}`].shape, [4, C], `${variant} ${t} logits ${j}`);
        assert.deepEqual(r[`z${j}`].shape, [4, F[t]], `${variant} ${t} feature ${j}`);
      }
      assert.ok(Number.isFinite(Number(r.loss.data[0])), `${variant} ${t}`);
      assert.equal(L.gr.length, variant === 'met' ? 2 : 0);
    }
});

test("trainable names and shapes per branch; the linear head is MET's exit.{j}.weight/bias", () => {
  const { cfg } = backbone();
  const exit1 = (t: BranchType) =>
    [...metParamShapes(cfg, metCfg({ branch: t }))].filter(([n]) => n.startsWith('exit.1.'));
  assert.deepEqual(exit1('linear'), [
    ['exit.1.weight', [C, D]],
    ['exit.1.bias', [C]],
  ]);
  assert.deepEqual(exit1('mlp'), [
    ['exit.1.fc.weight', [D, D]],
    ['exit.1.fc.bias', [D]],
    ['exit.1.weight', [C, D]],
    ['exit.1.bias', [C]],
  ]);
  assert.deepEqual(
    exit1('sl-vit').map(([n]) => n.slice(7)),
    [
      'norm1.weight',
      'norm1.bias',
      'attn.qkv.weight',
      'attn.qkv.bias',
      'attn.proj.weight',
      'attn.proj.bias',
      'norm2.weight',
      'norm2.bias',
      'mlp.fc1.weight',
      'mlp.fc1.bias',
      'mlp.fc2.weight',
      'mlp.fc2.bias',
      'norm.weight',
      'norm.bias',
      'weight',
      'bias',
    ],
  );
  assert.deepEqual(exit1('conv-ignore'), [
    ['exit.1.conv.weight', [8, D, 3, 3]],
    ['exit.1.conv.bias', [8]],
    ['exit.1.weight', [C, 8]],
    ['exit.1.bias', [C]],
  ]);
  assert.deepEqual(exit1('conv-project').slice(0, 3), [
    ['exit.1.proj.weight', [N, D]],
    ['exit.1.proj.bias', [N]],
    ['exit.1.conv.weight', [8, D + 1, 3, 3]],
  ]);
  // Stored values = the formula's count, for every type.
  for (const t of BRANCH_TYPES) {
    const n = exit1(t).reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
    assert.equal(n, PARAMS[t], t);
  }
  // No branch setting is the same as linear: same shapes, same initial values to the bit.
  const plain = { ...MET_DEFAULTS, exits: [1, 2, 3], numClasses: C } as MetConfig;
  delete plain.branch;
  assert.deepEqual([...metParamShapes(cfg, plain)], [...metParamShapes(cfg, metCfg({ branch: 'linear' }))]);
  const a = initMetParams(cfg, plain, 7);
  const b = initMetParams(cfg, metCfg({ branch: 'linear' }), 7);
  for (const [k, v] of a) assert.deepEqual(v.data, b.get(k)!.data, k);
  // Per exit: a list.
  const mixed = metParamShapes(cfg, metCfg({ branch: ['conv-add', 'linear', 'sl-vit'] }));
  assert.deepEqual(mixed.get('exit.1.weight'), [C, 8]);
  assert.deepEqual(mixed.get('exit.2.weight'), [C, D]);
  assert.deepEqual(mixed.get('exit.3.attn.qkv.weight'), [3 * D, D]);
  assert.ok(!mixed.has('exit.2.fc.weight'));
});

test("initial values: LayerNorms 1/0, biases 0, matrices std 0.02, conv kernels He, heads as MET's", () => {
  const { cfg } = backbone();
  const v = initMetParams(cfg, metCfg({ branch: ['sl-vit', 'conv-project', 'mlp'] }), 3);
  const get = (n: string) => v.get(n)!.data as Float32Array;
  const std = (x: Float32Array) => Math.sqrt(x.reduce((a, b) => a + b * b, 0) / x.length);
  for (const n of ['exit.1.norm1.weight', 'exit.1.norm2.weight', 'exit.1.norm.weight'])
    assert.ok(
      get(n).every((x) => x === 1),
      n,
    );
  for (const n of [
    'exit.1.norm1.bias',
    'exit.1.attn.qkv.bias',
    'exit.1.mlp.fc2.bias',
    'exit.2.conv.bias',
    'exit.2.proj.bias',
    'exit.3.fc.bias',
    'exit.3.bias',
  ])
    assert.ok(
      get(n).every((x) => x === 0),
      n,
    );
  // Truncated at 2 std: the sample std is 0.88 of the nominal one.
  for (const n of ['exit.1.attn.qkv.weight', 'exit.1.mlp.fc1.weight', 'exit.2.proj.weight', 'exit.3.fc.weight']) {
    assert.ok(
      get(n).every((x) => Math.abs(x) <= 0.04),
      n,
    );
    assert.ok(Math.abs(std(get(n)) - 0.88 * 0.02) < 0.003, `${n}: std ${std(get(n))}`);
  }
  const he = Math.sqrt(2 / (9 * (D + 1)));
  assert.ok(get('exit.2.conv.weight').every((x) => Math.abs(x) <= 2 * he));
  assert.ok(Math.abs(std(get('exit.2.conv.weight')) - 0.88 * he) < 0.1 * he);
  for (const j of [1, 2, 3])
    assert.ok(
      get(`exit.${j}.weight`).every((x) => Math.abs(x) <= 0.02) && get(`exit.${j}.weight`).some((x) => x !== 0),
    );
  const zeros = initMetParams(cfg, metCfg({ branch: 'mlp', headInit: 'zeros' }), 3);
  assert.ok((zeros.get('exit.1.weight')!.data as Float32Array).every((x) => x === 0));
  assert.ok(
    (zeros.get('exit.1.fc.weight')!.data as Float32Array).some((x) => x !== 0),
    'headInit is about the classifier only',
  );
  // Weight decay: branch matrices and kernels, not LayerNorms or biases.
  assert.deepEqual(
    [
      'exit.1.weight',
      'exit.1.fc.weight',
      'exit.1.attn.qkv.weight',
      'exit.1.attn.proj.weight',
      'exit.1.mlp.fc1.weight',
      'exit.1.mlp.fc2.weight',
      'exit.1.conv.weight',
      'exit.1.proj.weight',
    ].map(decays),
    [true, true, true, true, true, true, true, true],
  );
  assert.deepEqual(
    [
      'exit.1.bias',
      'exit.1.norm1.weight',
      'exit.1.norm.weight',
      'exit.1.conv.bias',
      'exit.1.attn.qkv.bias',
      'ea.A',
      'ea.diag',
    ].map(decays),
    [false, false, false, false, false, false, false],
  );
});

test('conv3x3 (im2col from Pad, Slice, Concat and one MatMul) equals a direct loop', async () => {
  const r = rng(11);
  const [B, H, W, ci, co] = [2, 5, 4, 3, 4];
  const x = Float32Array.from({ length: B * H * W * ci }, () => 2 * r() - 1);
  const k = Float32Array.from({ length: co * ci * 9 }, () => 2 * r() - 1);
  const bias = Float32Array.from({ length: co }, () => 2 * r() - 1);
  const g = new Graph();
  const y = conv3x3(g, g.input('x', ['B', H, W, ci]), g.input('k', [co, ci, 3, 3]), g.input('b', [co]));
  const s = await Session.create(compile(g, { y }), { threads: 1 });
  const out = await s.run({
    x: { dtype: 'float32', shape: [B, H, W, ci], data: x },
    k: { dtype: 'float32', shape: [co, ci, 3, 3], data: k },
    b: { dtype: 'float32', shape: [co], data: bias },
  });
  await s.release();
  assert.deepEqual(out.y.shape, [B, H, W, co]);
  const want = new Float32Array(B * H * W * co);
  for (let b = 0; b < B; b++)
    for (let yy = 0; yy < H; yy++)
      for (let xx = 0; xx < W; xx++)
        for (let o = 0; o < co; o++) {
          let acc = bias[o];
          for (let c = 0; c < ci; c++)
            for (let dy = 0; dy < 3; dy++)
              for (let dx = 0; dx < 3; dx++) {
                const sy = yy + dy - 1;
                const sx = xx + dx - 1;
                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue; // zero padding
                acc += k[((o * ci + c) * 3 + dy) * 3 + dx] * x[((b * H + sy) * W + sx) * ci + c];
              }
          want[((b * H + yy) * W + xx) * co + o] = acc;
        }
  assert.ok(maxAbsDiff(out.y.data as Float32Array, want) < 1e-5);
});

// ---------------------------------------------------------------- accounting

test('parameters per branch: formula = hand-computed = the torch modules of the reference', () => {
  const dims = { dim: D, grid: G, heads: 4, mlpDim: M };
  for (const t of BRANCH_TYPES) assert.equal(branchParamCount(branchSpec(dims, {}, C, t)).params, PARAMS[t], t);
  // Non-default widths: h = 16; 2 heads (same count); MLP ratio 1.5 (M = 48); c = 5.
  assert.equal(branchParamCount(branchSpec(dims, { branchHidden: 16 }, C, 'mlp')).params, D * 16 + 16 + 16 * C + C);
  assert.equal(
    branchParamCount(branchSpec(dims, { branchHeads: 2, branchMlpRatio: 1.5 }, C, 'sl-vit')).params,
    4 * D * D + 2 * D * 48 + 11 * D + 48 + D * C + C,
  );
  assert.equal(
    branchParamCount(branchSpec(dims, { branchChannels: 5 }, C, 'conv-project')).params,
    D * N + N + 9 * (D + 1) * 5 + 5 + 5 * C + C,
  );
  // The reference counts its nn.Linear / nn.TransformerEncoderLayer / nn.Conv2d parameters.
  let checked = 0;
  for (const f of fs.readdirSync(FIX).filter((x) => /^met_branch_.*\.json$/.test(x))) {
    const side = JSON.parse(fs.readFileSync(path.join(FIX, f), 'utf8')) as {
      met: Partial<MetConfig>;
      branch_params: { per_exit: number[] };
    };
    const m = { ...MET_DEFAULTS, numClasses: C, ...upgradeMetConfig(side.met) } as MetConfig;
    const got = branchSpecs(dims, m).map((b) => branchParamCount(b).params);
    assert.deepEqual(got, side.branch_params.per_exit, f);
    checked++;
  }
  assert.ok(checked >= 6, `${checked} branch fixtures`);
});

test('met params accounting: heads become branches, one row per type, per-exit counts', () => {
  const base = {
    dim: D,
    depth: 3,
    exits: [1, 2, 3],
    rank: 4,
    classes: C,
    eaPositions: 'both' as const,
    variant: 'met' as const,
    backboneParams: 1000,
    grid: G,
    heads: 4,
    mlpDim: M,
  };
  const lin = metParams(base);
  assert.equal(lin.heads, 3 * PARAMS.linear);
  assert.deepEqual(lin.components.at(-1), {
    name: 'heads h_j',
    shape: `D×C + C = ${D}×${C} + ${C}`,
    count: 3,
    each: 231,
    params: 693,
    trainable: true,
  });
  const mixed = metParams({ ...base, branch: ['sl-vit', 'linear', 'sl-vit'] });
  assert.deepEqual(
    mixed.branches.map((b) => [b.exit, b.layer, b.type, b.params]),
    [
      [1, 1, 'sl-vit', 8839],
      [2, 2, 'linear', 231],
      [3, 3, 'sl-vit', 8839],
    ],
  );
  assert.equal(mixed.heads, 2 * 8839 + 231);
  assert.equal(mixed.trainable, lin.trainable - 3 * 231 + mixed.heads);
  assert.equal(mixed.met_adapters, lin.met_adapters);
  const rows = mixed.components.filter((c) => c.trainable && /branches|heads/.test(c.name));
  assert.deepEqual(
    rows.map((c) => [c.name, c.count, c.each, c.params]),
    [
      ['sl-vit branches', 2, 8839, 17678],
      ['heads h_j', 1, 231, 231],
    ],
  );
  assert.equal(
    mixed.branches[0].parts.reduce((a, p) => a + p.params, 0),
    8839,
  );
  for (const t of BRANCH_TYPES) assert.equal(metParams({ ...base, branch: t }).heads, 3 * PARAMS[t], t);
  // The sl-vit and conv branches need the grid (and heads, MLP) of the backbone.
  assert.throws(() => metParams({ ...base, grid: undefined, branch: 'conv-add' }), /grid/);
  assert.throws(() => metParams({ ...base, branch: ['mlp', 'linear'] }), /2 branch types given for 3 exits/);
  assert.ok(vitParamCount({ imageSize: 24, channels: 3, patchSize: 4, dim: D, depth: 3, heads: 4, mlpDim: M }) > 0);
});

test('multiply-adds per branch: formula = hand-computed = the graph the engine runs', () => {
  const { cfg } = backbone();
  for (const t of BRANCH_TYPES) {
    const spec = branchSpecs(branchDims(cfg), metCfg({ branch: t }))[0];
    assert.equal(branchMacs(spec), MACS[t], `${t} formula`);
    for (const variant of ['met', 'linear_probe'] as const) {
      const { branches } = segmentAndBranchMacs(cfg, metCfg({ variant, branch: t }));
      assert.deepEqual(branches, [MACS[t], MACS[t], MACS[t]], `${t} ${variant}: graph`);
    }
  }
  // Widths from the flags.
  const spec = branchSpecs(branchDims(cfg), metCfg({ branch: 'sl-vit', branchHeads: 2, branchMlpRatio: 1.5 }))[0];
  assert.equal(
    segmentAndBranchMacs(cfg, metCfg({ branch: 'sl-vit', branchHeads: 2, branchMlpRatio: 1.5 })).branches[0],
    branchMacs(spec),
  );
  assert.equal(branchMacs(spec), MACS['sl-vit'] - 2 * D * M + 2 * D * 48);
});

test("the sl-vit branch runs the backbone's attention block: Q K^T is one matmulNT, FusedMatMul on the CPU", () => {
  const { cfg, w } = backbone();
  const m = metCfg({ exits: [3], branch: 'sl-vit' });
  const g = new Graph();
  const f = metForward(
    g,
    new VitParams(g, w),
    new MetTensors(g, initMetParams(cfg, m, 1), true),
    cfg,
    m,
    g.input('images', ['B', 3, cfg.imageSize, cfg.imageSize]),
  );
  // Layers 1-3 and the branch: one Q K^T each, no Transpose + MatMul in its place.
  const qk = g.ancestors([f.logits[0]]).nodes.filter((n) => n.op === 'MatMulNT');
  assert.equal(qk.length, 4);
  assert.deepEqual(qk[3].outputs[0].shape, ['B', 4, 1, 1 + N], 'the branch: the class token queries all tokens');
  const cpu = compile(g, { logits: f.logits[0] }, { cpuContribOps: true });
  const std = compile(g, { logits: f.logits[0] });
  assert.equal(std.nodeCount - cpu.nodeCount, 4, 'each FusedMatMul replaces a Transpose + MatMul');
});

test('GFLOPs per exit include the branch exactly like the rest of the network', () => {
  const { cfg } = backbone();
  for (const variant of ['met', 'linear_probe'] as const) {
    const lin = segmentMacs(cfg, metCfg({ variant }));
    for (const t of BRANCH_TYPES) {
      const seg = segmentMacs(cfg, metCfg({ variant, branch: t }));
      // Early exits: the linear head's D·C is replaced by the branch's cost, nothing else changes.
      for (const j of [0, 1]) assert.equal(seg[j] - lin[j], MACS[t] - D * C, `${variant} ${t} exit ${j + 1}`);
      // The last exit: a branch that reads the patches needs its layer computed in full, not just
      // the exit token's query and MLP. Without adapters (linear probe) that is, at n = 37 tokens,
      // q·k/v·proj for 36 more queries and the MLP of 36 more tokens:
      //   full  4nD² + 2n²D + 2nDM = 390720,  pruned D² + 2nD² + 2nD + D² + 2DM = 84288.
      // With MET's adapters the patch tokens also pass the last layer's MLP E-adapter: more still.
      const readsPatches = t === 'sl-vit' || t.startsWith('conv-');
      if (!readsPatches) assert.equal(seg[2] - lin[2], MACS[t] - D * C, `${variant} ${t} last exit`);
      else if (variant === 'linear_probe')
        assert.equal(seg[2] - lin[2], MACS[t] - D * C + (390720 - 84288), `${t} last exit`);
      else assert.ok(seg[2] - lin[2] > MACS[t] - D * C + (390720 - 84288), `${t} last exit: full last layer`);
    }
  }
});

test('branch settings: errors name the field', () => {
  const dims = { dim: D, grid: G, heads: 4, mlpDim: M };
  assert.throws(
    () => validateBranches(dims, { branch: 'mlpp' as BranchType }, 3),
    /branch: unknown branch type 'mlpp'/,
  );
  assert.throws(
    () => validateBranches(dims, { branch: ['mlp', 'linear'] }, 3),
    /branch: 2 branch types given for 3 exits/,
  );
  assert.throws(
    () => validateBranches(dims, { branch: 'sl-vit', branchHeads: 5 }, 3),
    /branchHeads: 5 heads do not divide the width D = 32/,
  );
  assert.throws(
    () => validateBranches(dims, { branch: 'mlp', branchHidden: 1.5 }, 3),
    /branchHidden must be a non-negative integer/,
  );
  assert.doesNotThrow(
    () => validateBranches(dims, { branch: 'mlp', branchHeads: 5 }, 3),
    'heads only matter to sl-vit',
  );
  assert.deepEqual(branchTypes({}, 2), ['linear', 'linear']);
  assert.deepEqual(branchTypes({ branch: 'conv-add' }, 2), ['conv-add', 'conv-add']);
});
