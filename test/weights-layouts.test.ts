// Layout conversion: each supported layout, built from a tiny timm state dict by the hand-written
// exporters in fixtures/weights/builders.ts, must convert back to exactly the timm tensors, with
// the config inferred from shapes; plus detection, defaults and the load report.

import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import { type HostTensor, UserError } from '../src/engine/tensor';
import type { VitConfig } from '../src/engine/model/config';
import { detectLayout, formatReport, toCanonical, type Layout } from '../src/engine/weights/layouts';
import {
  TINY,
  type Tiny,
  convToPatchLinear,
  tensor,
  timmState,
  toHf,
  toNpz,
  toTorchvision,
  toVitPytorch,
} from './fixtures/weights/builders';

function bits(t: HostTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Every canonical tensor equals the timm original bit for bit, and nothing else is produced. */
function assertCanonical(got: Map<string, HostTensor>, want: Map<string, HostTensor>): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, t] of want) {
    const g = got.get(k)!;
    assert.equal(g.dtype, 'float32', k);
    assert.deepEqual(g.shape, t.shape, k);
    assert.ok(bits(g).equals(bits(t)), `${k}: values differ`);
  }
}

function throwsUser(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    for (const f of fragments)
      assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

const TINY_CONFIG: Omit<VitConfig, 'lnEps' | 'mean' | 'std' | 'qkvBias' | 'headDim' | 'heads'> = {
  imageSize: 8,
  channels: 3,
  patchSize: 4,
  dim: 8,
  depth: 2,
  mlpDim: 16,
  act: 'gelu',
  numClasses: 3,
  posGrid: 2,
};

function clean(report: { missing: string[]; unexpected: string[]; mismatched: unknown[] }): void {
  assert.deepEqual(report.missing, []);
  assert.deepEqual(report.unexpected, []);
  assert.deepEqual(report.mismatched, []);
}

describe('layout detection', () => {
  const state = timmState();
  const cases: [Layout, Map<string, HostTensor>][] = [
    ['timm', state],
    ['hf', toHf(state)],
    ['hf', toHf(state, TINY, '')],
    ['torchvision', toTorchvision(state)],
    ['vit-pytorch', toVitPytorch(timmState(TINY, { qkvBias: false }))],
    ['vit-pytorch', toVitPytorch(timmState(TINY, { qkvBias: false }), TINY, 'inner')],
    ['npz', toNpz(state)],
    ['npz', toNpz(state, TINY, { prefix: 'opt/target/' })],
  ];
  for (const [layout, s] of cases) {
    test(`detects ${layout} (${[...s.keys()][0]})`, () => assert.equal(detectLayout(s.keys()), layout));
  }
  test('unknown keys -> error listing a few of them', () => {
    throwsUser(
      () => detectLayout(['features.0.weight', 'features.0.bias', 'classifier.1.weight'], 'resnet.pth'),
      'resnet.pth',
      "'features.0.weight'",
      'supported layouts',
    );
  });
});

describe('timm', () => {
  test('identity conversion, config from shapes, defaults', () => {
    const s = timmState();
    const { tensors, config, report } = toCanonical(s, 'timm', { heads: 2 });
    assertCanonical(tensors, s);
    clean(report);
    assert.deepEqual(config, {
      ...TINY_CONFIG,
      heads: 2,
      headDim: 4,
      qkvBias: true,
      lnEps: 1e-6,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
    });
  });

  test('heads: HEADS_BY_DIM for standard widths, an error naming the problem otherwise', () => {
    throwsUser(
      () => toCanonical(timmState(), 'timm', {}, 'tiny.safetensors'),
      'tiny.safetensors',
      'number of attention heads',
      'width 8',
      '--heads N',
    );
    const c: Tiny = { ...TINY, D: 192, H: 3, dh: 64, M: 32, depth: 1 };
    assert.equal(toCanonical(timmState(c), 'timm').config.heads, 3);
    throwsUser(() => toCanonical(timmState(), 'timm', { heads: 3 }), '--heads', 'not divisible into 3 heads');
  });

  test('no head -> numClasses 0; no qkv bias -> qkvBias false; 1 channel -> single mean/std', () => {
    const c: Tiny = { ...TINY, C: 1 };
    const s = timmState(c, { head: false, qkvBias: false });
    const { tensors, config, report } = toCanonical(s, 'timm', { heads: 2 });
    clean(report);
    assertCanonical(tensors, s);
    assert.equal(config.numClasses, 0);
    assert.equal(config.qkvBias, false);
    assert.equal(config.channels, 1);
    assert.deepEqual(config.mean, [0.5]);
    assert.deepEqual(config.std, [0.5]);
  });

  test('overrides win (imageSize, act, lnEps, mean/std) and bad mean lengths are refused', () => {
    const o: Partial<VitConfig> = {
      heads: 2,
      imageSize: 16,
      act: 'relu',
      lnEps: 1e-5,
      mean: [0.1, 0.2, 0.3],
      std: [1, 2, 3],
    };
    const { config } = toCanonical(timmState(), 'timm', o);
    assert.equal(config.imageSize, 16);
    assert.equal(config.posGrid, 2); // the checkpoint's grid; resampling is the model's business
    assert.equal(config.act, 'relu');
    assert.equal(config.lnEps, 1e-5);
    assert.deepEqual(config.mean, [0.1, 0.2, 0.3]);
    throwsUser(
      () => toCanonical(timmState(), 'timm', { heads: 2, mean: [0.5] }),
      'mean/std have 1/3 values for 3 channels',
    );
  });

  test('report: missing, unexpected (original names), mis-shaped (both shapes)', () => {
    const s = timmState();
    s.delete('blocks.1.mlp.fc2.bias');
    s.set(
      'blocks.0.attn.qkv.weight',
      tensor([24, 9], () => 0),
    );
    s.set(
      'head_drop.weight',
      tensor([1], () => 0),
    );
    const { report } = toCanonical(s, 'timm', { heads: 2 }, 'weights.pth');
    assert.deepEqual(report.missing, ['blocks.1.mlp.fc2.bias']);
    assert.deepEqual(report.unexpected, ['head_drop.weight']);
    assert.deepEqual(report.mismatched, [
      { name: 'blocks.0.attn.qkv.weight', expected: [24, 8], found: [24, 9], source: undefined },
    ]);
    const text = formatReport(report, 'weights.pth');
    assert.match(text, /weights\.pth: tensor 'blocks\.0\.attn\.qkv\.weight' expected \[24, 8\], found \[24, 9\]/);
    assert.match(text, /weights\.pth: tensor 'blocks\.1\.mlp\.fc2\.bias' is missing/);
    assert.match(text, /1 unexpected key\(s\), ignored: 'head_drop\.weight'/);
  });

  test('a position embedding that is not 1 + G*G is refused clearly', () => {
    const s = timmState();
    s.set(
      'pos_embed',
      tensor([1, 4, 8], () => 0),
    );
    throwsUser(() => toCanonical(s, 'timm', { heads: 2 }), 'position embedding has 4 positions');
  });

  test('int and half inputs are converted to float32', () => {
    const s = timmState();
    const w = s.get('norm.weight')!;
    const half = new Uint16Array(w.data.length).fill(0x3c00); // 1.0
    s.set('norm.weight', { dtype: 'float16', shape: w.shape, data: half });
    const { tensors } = toCanonical(s, 'timm', { heads: 2 });
    assert.equal(tensors.get('norm.weight')!.dtype, 'float32');
    assert.deepEqual(Array.from(tensors.get('norm.weight')!.data as Float32Array), new Array(8).fill(1));
  });
});

describe('Hugging Face', () => {
  test("q/k/v stacked into qkv; 'vit.' prefix optional; lnEps 1e-12", () => {
    const s = timmState();
    for (const prefix of ['vit.', '']) {
      const hf = toHf(s, TINY, prefix);
      const { tensors, config, report } = toCanonical(hf, 'hf', { heads: 2 });
      clean(report);
      assertCanonical(tensors, s);
      assert.equal(config.lnEps, 1e-12);
      assert.deepEqual(config.mean, [0.5, 0.5, 0.5]);
    }
  });

  test('explicit q/k/v rows: qkv = [q; k; v]', () => {
    const hf = toHf(timmState());
    const { tensors } = toCanonical(hf, 'hf', { heads: 2 });
    const qkv = tensors.get('blocks.1.attn.qkv.weight')!.data as Float32Array;
    const k = hf.get('vit.encoder.layer.1.attention.attention.key.weight')!.data as Float32Array;
    assert.deepEqual(Array.from(qkv.subarray(64, 128)), Array.from(k));
  });

  test('ViTModel pooler is unexpected; a lone missing key makes qkv incomplete', () => {
    const hf = toHf(timmState(), TINY, '');
    hf.set(
      'pooler.dense.weight',
      tensor([8, 8], () => 0),
    );
    hf.delete('encoder.layer.0.attention.attention.key.bias');
    const { report } = toCanonical(hf, 'hf', { heads: 2 });
    assert.deepEqual(report.unexpected, ['pooler.dense.weight']);
    assert.deepEqual(report.missing, ['blocks.0.attn.qkv.bias']);
    assert.ok(report.notes.some((n) => n.includes("'encoder.layer.0.attention.attention.key.bias'")));
  });

  test('mis-shaped q/k/v are reported with the checkpoint keys', () => {
    const hf = toHf(timmState());
    hf.set(
      'vit.encoder.layer.0.attention.attention.value.weight',
      tensor([8, 7], () => 0),
    );
    const { report } = toCanonical(hf, 'hf', { heads: 2 });
    assert.equal(report.mismatched.length, 1);
    assert.equal(report.mismatched[0].name, 'blocks.0.attn.qkv.weight');
    assert.deepEqual(report.mismatched[0].expected, [24, 8]);
    assert.deepEqual(report.mismatched[0].found, [8, 7]);
    assert.match(report.mismatched[0].source!, /value\.weight/);
  });
});

describe('torchvision', () => {
  test('in_proj is timm qkv as is; imagenet mean/std; old mlp names', () => {
    const s = timmState();
    for (const old of [false, true]) {
      const tv = toTorchvision(s, TINY, old);
      const { tensors, config, report } = toCanonical(tv, 'torchvision', { heads: 2 });
      clean(report);
      assertCanonical(tensors, s);
      assert.ok(
        bits(tensors.get('blocks.0.attn.qkv.weight')!).equals(
          bits(tv.get('encoder.layers.encoder_layer_0.self_attention.in_proj_weight')!),
        ),
      );
      assert.equal(config.lnEps, 1e-6);
      assert.deepEqual(config.mean, [0.485, 0.456, 0.406]);
      assert.deepEqual(config.std, [0.229, 0.224, 0.225]);
    }
  });

  test('heads.pre_logits is reported and the head dropped', () => {
    const tv = toTorchvision(timmState());
    tv.set(
      'heads.pre_logits.weight',
      tensor([8, 8], () => 0),
    );
    tv.set(
      'heads.pre_logits.bias',
      tensor([8], () => 0),
    );
    const { config, report, tensors } = toCanonical(tv, 'torchvision', { heads: 2 });
    assert.equal(config.numClasses, 0);
    assert.ok(!tensors.has('head.weight'));
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unexpected.sort(), [
      'heads.head.bias',
      'heads.head.weight',
      'heads.pre_logits.bias',
      'heads.pre_logits.weight',
    ]);
    assert.ok(report.notes.some((n) => n.includes('pre_logits')));
  });
});

describe('vit-pytorch', () => {
  test('patch Linear in (p1 p2 c) order -> conv kernel; no qkv bias; lnEps 1e-5; both eras', () => {
    for (const C of [1, 3]) {
      const c: Tiny = { ...TINY, C };
      const s = timmState(c, { qkvBias: false });
      for (const era of ['prenorm', 'inner'] as const) {
        const vp = toVitPytorch(s, c, era);
        const { tensors, config, report } = toCanonical(vp, 'vit-pytorch', { heads: 2 });
        clean(report);
        assertCanonical(tensors, s);
        assert.equal(config.channels, C);
        assert.equal(config.patchSize, 4);
        assert.equal(config.qkvBias, false);
        assert.equal(config.lnEps, 1e-5);
        assert.equal(config.imageSize, 8);
        assert.deepEqual(config.mean, new Array(C).fill(0.5));
      }
    }
  });

  test('one patch weight checked by hand: kernel[d, c, i, j] = linear[d, (i*p + j)*C + c]', () => {
    const c: Tiny = { ...TINY, C: 3 };
    const s = timmState(c, { qkvBias: false });
    const lin = convToPatchLinear(s.get('patch_embed.proj.weight')!, c).data as Float32Array;
    const { tensors } = toCanonical(toVitPytorch(s, c), 'vit-pytorch', { heads: 2 });
    const k = tensors.get('patch_embed.proj.weight')!.data as Float32Array;
    const [d, ch, i, j] = [5, 2, 1, 3];
    assert.equal(k[((d * 3 + ch) * 4 + i) * 4 + j], lin[d * 48 + (i * 4 + j) * 3 + ch]);
  });

  test('heads default to inner/64 (dim_head 64, inner wider than dim), ReLU via overrides', () => {
    const c: Tiny = { ...TINY, H: 2, dh: 64, C: 1 };
    const s = timmState(c, { qkvBias: false });
    const { config, report, tensors } = toCanonical(toVitPytorch(s, c), 'vit-pytorch', { act: 'relu' });
    clean(report);
    assertCanonical(tensors, s);
    assert.equal(config.heads, 2);
    assert.equal(config.headDim, 64);
    assert.equal(config.act, 'relu');
    // inner 8 is not a multiple of 64: heads must be given.
    throwsUser(
      () => toCanonical(toVitPytorch(timmState(TINY, { qkvBias: false })), 'vit-pytorch', {}, 'vp.pt'),
      'vp.pt',
      'default head width 64',
      '--heads N',
    );
  });

  test('newest layout with LayerNorms around the patch Linear is refused with an explanation', () => {
    const vp = toVitPytorch(timmState(TINY, { qkvBias: false }), TINY, 'inner');
    const lin = vp.get('to_patch_embedding.1.weight')!;
    const bias = vp.get('to_patch_embedding.1.bias')!;
    vp.delete('to_patch_embedding.1.weight');
    vp.delete('to_patch_embedding.1.bias');
    vp.set(
      'to_patch_embedding.1.weight',
      tensor([48], () => 1),
    );
    vp.set(
      'to_patch_embedding.1.bias',
      tensor([48], () => 0),
    );
    vp.set('to_patch_embedding.2.weight', lin);
    vp.set('to_patch_embedding.2.bias', bias);
    vp.set(
      'to_patch_embedding.3.weight',
      tensor([8], () => 1),
    );
    vp.set(
      'to_patch_embedding.3.bias',
      tensor([8], () => 0),
    );
    throwsUser(
      () => toCanonical(vp, 'vit-pytorch', { heads: 2 }, 'new.pt'),
      'new.pt',
      'LayerNorms around the patch embedding',
      'to_patch_embedding.1.weight',
    );
  });

  test('ambiguous patch widths need channels/patchSize', () => {
    const c: Tiny = { ...TINY, C: 4, p: 2 }; // 2*2*4 = 16 = 4*4*1: read as 1 channel unless told
    const s = timmState(c, { qkvBias: false });
    const vp = toVitPytorch(s, c);
    assert.equal(toCanonical(vp, 'vit-pytorch', { heads: 2 }).config.channels, 1);
    const told = toCanonical(vp, 'vit-pytorch', { heads: 2, channels: 4, mean: [0, 0, 0, 0], std: [1, 1, 1, 1] });
    clean(told.report);
    assertCanonical(told.tensors, s);
    throwsUser(() => toCanonical(vp, 'vit-pytorch', { heads: 2, channels: 3 }), 'does not split into a square patch');
  });

  test('identity to_out (1 head as wide as the model) is synthesised', () => {
    const c: Tiny = { ...TINY, H: 1, dh: 8 };
    const vp = toVitPytorch(timmState(c, { qkvBias: false }), c);
    for (const k of [...vp.keys()]) if (k.includes('to_out')) vp.delete(k);
    const { tensors, report } = toCanonical(vp, 'vit-pytorch', { heads: 1 });
    clean(report);
    const w = tensors.get('blocks.0.attn.proj.weight')!.data as Float32Array;
    assert.equal(w[0], 1);
    assert.equal(w[1], 0);
    assert.equal(w[9], 1);
    assert.ok(report.notes.some((n) => n.includes('identity')));
  });
});

describe('Google npz', () => {
  test('kernel transposes, per-head q/k/v/out reshapes, HWIO patch kernel; heads from the kernel shape', () => {
    const s = timmState();
    const { tensors, config, report } = toCanonical(toNpz(s), 'npz');
    clean(report);
    assertCanonical(tensors, s);
    assert.equal(config.heads, 2);
    assert.equal(config.headDim, 4);
    assert.equal(config.lnEps, 1e-6);
    assert.deepEqual(config.mean, [0.5, 0.5, 0.5]);
  });

  test("weights under 'opt/target/' next to optimizer state", () => {
    const s = timmState();
    const z = toNpz(s, TINY, { prefix: 'opt/target/' });
    z.set(
      'opt/state/step',
      tensor([1], () => 1),
    );
    z.set(
      'opt/state/param_states/embedding/kernel/v',
      tensor([4, 4, 3, 8], () => 0),
    );
    const { tensors, report } = toCanonical(z, 'npz');
    clean(report);
    assertCanonical(tensors, s);
    assert.ok(report.notes.some((n) => n.includes("outside 'opt/target/'")));
  });

  test('pre_logits is reported and the head dropped with it', () => {
    const { config, report } = toCanonical(toNpz(timmState(), TINY, { preLogits: true }), 'npz');
    assert.equal(config.numClasses, 0);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unexpected.sort(), ['head/bias', 'head/kernel', 'pre_logits/bias', 'pre_logits/kernel']);
    assert.ok(report.notes.some((n) => n.includes('pre_logits') && n.includes('not supported')));
  });

  test('a 2-D attention kernel is reported as mis-shaped, not crashed on', () => {
    const z = toNpz(timmState());
    z.set(
      'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/out/kernel',
      tensor([8, 8], () => 0),
    );
    const { report } = toCanonical(z, 'npz');
    assert.deepEqual(report.mismatched, [
      {
        name: 'blocks.1.attn.proj.weight',
        expected: [8, 8],
        found: [8, 8],
        source: 'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/out/kernel',
        detail: 'attention output kernel must be [heads, head_dim, D]',
      },
    ]);
    assert.match(
      formatReport(report, 'g.npz'),
      /found \[8, 8\] \(checkpoint key '.*out\/kernel'\): attention output kernel must be/,
    );
  });
});
