// A general pre-LN Vision Transformer built in the graph IR (timm's VisionTransformer, readable
// next to it): patch embedding, class token, learned position embeddings, `depth` blocks of
//   x = x + attn(norm1(x));  x = x + mlp(norm2(x))
// and a final LayerNorm + linear head on the class token.
//
// Frozen weights become ONNX initializers; the names listed as trainable become graph inputs
// (so gradients can be asked for them and the optimizer can feed new values every step).
// The attention and MLP blocks take their weights by name prefix, so the exit branches
// (model/branches.ts: sl-vit) run the same blocks on their own tensors.

import type { Graph, Tensor } from '../graph/ir';
import { type HostTensor, numel, shapeStr } from '../tensor';
import { canonicalShapes, type VitConfig } from './config';
import { antialiasWeights } from '../data/resample';

/**
 * The parameter store of a graph: named host tensors, each a graph input when trainable, else a
 * constant. The backbone's canonical weights are one (a chosen subset trainable); MET's tensors
 * (MetTensors, model/met.ts) are another, built on this one with their adapter-core views.
 */
export class VitParams {
  private cache = new Map<string, Tensor>();
  /** The trainable tensors made graph inputs so far, by name. */
  readonly inputs = new Map<string, Tensor>();

  constructor(
    readonly g: Graph,
    readonly tensors: Map<string, HostTensor>,
    readonly trainable: ReadonlySet<string> = new Set(),
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  host(name: string): HostTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`missing ${this.kind} '${name}'`);
    return t;
  }

  /** What a missing tensor is called in errors. */
  protected get kind(): string {
    return 'weight';
  }

  /** A derived tensor (a slice, a transposed constant), made once per graph under `key`. */
  protected memo(key: string, make: () => Tensor): Tensor {
    let t = this.cache.get(key);
    if (!t) {
      t = make();
      this.cache.set(key, t);
    }
    return t;
  }

  /** The tensor as stored: a graph input when trainable, else a constant. */
  get(name: string): Tensor {
    let t = this.cache.get(name);
    if (t) return t;
    const h = this.host(name);
    if (this.trainable.has(name)) {
      t = this.g.input(name, h.shape);
      this.inputs.set(name, t);
    } else {
      t = this.g.constant(h, name);
    }
    this.cache.set(name, t);
    return t;
  }

  /**
   * y = x @ W^T + b for a PyTorch-layout weight W [out, in], optionally restricted to output rows
   * [r0, r1). Frozen weights are transposed (and sliced) on the host once, so the graph holds
   * [in, out] matrices and runs no transpose; trainable ones are sliced/transposed in the graph
   * so their gradients come back in the stored layout.
   */
  linear(x: Tensor, wName: string, bName?: string, rows?: [number, number]): Tensor {
    const g = this.g;
    let y: Tensor;
    if (this.trainable.has(wName)) {
      let w = this.get(wName);
      if (rows) w = g.slice(w, 0, rows[0], rows[1]);
      y = g.matmul(x, g.mT(w));
    } else {
      const key = `${wName}^T${rows ? `[${rows}]` : ''}`;
      y = g.matmul(
        x,
        this.memo(key, () => g.constant(transposeRows(this.host(wName), rows), key)),
      );
    }
    if (bName && this.has(bName)) {
      let b: Tensor;
      if (this.trainable.has(bName) || !rows) b = this.get(bName);
      else {
        const key = `${bName}[${rows}]`;
        b = this.memo(key, () => g.constant(sliceVec(this.host(bName), rows), key));
      }
      if (rows && this.trainable.has(bName)) b = g.slice(b, 0, rows[0], rows[1]);
      y = g.add(y, b);
    }
    return y;
  }
}

function transposeRows(w: HostTensor, rows?: [number, number]): HostTensor {
  if (w.shape.length !== 2) throw new Error(`expected a matrix, got ${shapeStr(w.shape)}`);
  const [O, I] = w.shape;
  const [r0, r1] = rows ?? [0, O];
  const n = r1 - r0;
  const src = w.data as Float32Array;
  const out = new Float32Array(I * n);
  for (let o = 0; o < n; o++) for (let i = 0; i < I; i++) out[i * n + o] = src[(r0 + o) * I + i];
  return { dtype: 'float32', shape: [I, n], data: out };
}

function sliceVec(b: HostTensor, [r0, r1]: [number, number]): HostTensor {
  return { dtype: 'float32', shape: [r1 - r0], data: (b.data as Float32Array).slice(r0, r1) };
}

export function gridSize(cfg: Pick<VitConfig, 'imageSize' | 'patchSize'>): number {
  if (cfg.imageSize % cfg.patchSize)
    throw new Error(`image size ${cfg.imageSize} is not a multiple of the patch size ${cfg.patchSize}`);
  return cfg.imageSize / cfg.patchSize;
}

/** Patch embedding + class token + position embedding: [B, C, S, S] -> [B, 1 + G*G, D]. */
export function vitEmbed(P: VitParams, cfg: VitConfig, images: Tensor): Tensor {
  const g = P.g;
  const p = cfg.patchSize;
  const G = gridSize(cfg);
  const C = cfg.channels;
  // Conv with kernel = stride = p is a matmul over non-overlapping patches.
  let x = g.reshape(images, [-1, C, G, p, G, p]);
  x = g.transpose(x, [0, 2, 4, 1, 3, 5]); // (B, G, G, C, p, p): flattening order of the conv kernel
  x = g.reshape(x, [-1, G * G, C * p * p]);
  const wName = 'patch_embed.proj.weight';
  const key = `${wName}^flat`;
  let w: Tensor;
  if (P.trainable.has(wName)) w = g.mT(g.reshape(P.get(wName), [cfg.dim, C * p * p]));
  else {
    const h = P.host(wName);
    w = g.constant(transposeRows({ dtype: 'float32', shape: [cfg.dim, C * p * p], data: h.data }), key);
  }
  x = g.add(g.matmul(x, w), P.get('patch_embed.proj.bias')); // (B, N, D)
  const cls = g.apply1('ExpandLike', [P.get('cls_token'), g.slice(x, 1, 0, 1)]); // (B, 1, D)
  x = g.concat([cls, x], 1);
  return g.add(x, P.get('pos_embed'));
}

/** Multi-head self-attention on already-normalised tokens h [B, T, D] -> [B, T, D]. */
export function vitAttention(P: VitParams, cfg: VitConfig, i: number, h: Tensor, bias?: Tensor): Tensor {
  return vitAttentionQ(P, cfg, i, h, h.shape[1] as number, bias);
}

/** Block i's attention where only the first `nq` tokens are queries (see attention). */
export function vitAttentionQ(
  P: VitParams,
  cfg: VitConfig,
  i: number,
  h: Tensor,
  nq: number,
  bias?: Tensor,
  onProbs?: (probs: Tensor) => void,
): Tensor {
  return attention(P, `blocks.${i}.attn.`, cfg.heads, cfg.headDim, h, nq, bias, onProbs);
}

/**
 * Multi-head attention where only the first `nq` tokens are queries (keys and values come from
 * all T): h [B, T, D] -> [B, nq, D], with P's tensors `${pre}qkv.weight` [3·H·dh, D] (+ bias) and
 * `${pre}proj.weight` [D, H·dh] (+ bias), timm's layout. With nq = 1 this is all a class token
 * needs (the last layer before an exit, the sl-vit exit branch). `bias` [nq, T] is added to the
 * attention logits (masks, exit-token key bias). `onProbs`, when given, receives the attention
 * probabilities [B, H, nq, T] (after the bias and softmax: what the model computes) so that a caller
 * can make them graph outputs (explore/attention.ts); it adds nothing to the graph itself.
 */
export function attention(
  P: VitParams,
  pre: string,
  H: number,
  dh: number,
  h: Tensor,
  nq: number,
  bias?: Tensor,
  onProbs?: (probs: Tensor) => void,
): Tensor {
  const g = P.g;
  const inner = H * dh;
  const T = h.shape[1] as number;
  const hq = nq === T ? h : g.slice(h, 1, 0, nq);
  const proj = (x: Tensor, k: number) =>
    P.linear(x, pre + 'qkv.weight', pre + 'qkv.bias', [k * inner, (k + 1) * inner]);
  const q = g.transpose(g.reshape(proj(hq, 0), [-1, nq, H, dh]), [0, 2, 1, 3]); // (B, H, nq, dh)
  // K in the same (B, H, T, dh) layout as Q and V: the swap of its last two axes is left to the
  // matmul (matmulNT: FusedMatMul's transB on the CPU), because a physical (B, T, H, dh) ->
  // (B, H, dh, T) transpose is about 3x slower than (B, T, H, dh) -> (B, H, T, dh) on the CPU.
  const k = g.transpose(g.reshape(proj(h, 1), [-1, T, H, dh]), [0, 2, 1, 3]); // (B, H, T, dh)
  const v = g.transpose(g.reshape(proj(h, 2), [-1, T, H, dh]), [0, 2, 1, 3]); // (B, H, T, dh)
  let s = g.mulScalar(g.matmulNT(q, k), 1 / Math.sqrt(dh)); // (B, H, nq, T)
  if (bias) s = g.add(s, bias);
  const a = g.softmax(s, -1); // (B, H, nq, T)
  onProbs?.(a);
  const o = g.reshape(g.transpose(g.matmul(a, v), [0, 2, 1, 3]), [-1, nq, inner]); // (B, nq, H*dh)
  return P.linear(o, pre + 'proj.weight', pre + 'proj.bias');
}

export function vitMlp(P: VitParams, cfg: VitConfig, i: number, h: Tensor): Tensor {
  return mlp(P, `blocks.${i}.mlp.`, cfg.act, h);
}

/** fc2(act(fc1(h))) with P's `${pre}fc1.*` [M, D] and `${pre}fc2.*` [D, M]: h [B, T, D] -> [B, T, D]. */
export function mlp(P: VitParams, pre: string, act: VitConfig['act'], h: Tensor): Tensor {
  const g = P.g;
  let y = P.linear(h, pre + 'fc1.weight', pre + 'fc1.bias');
  y = act === 'relu' ? g.relu(y) : g.gelu(y, act === 'gelu_tanh' ? 'tanh' : 'none');
  return P.linear(y, pre + 'fc2.weight', pre + 'fc2.bias');
}

export function layerNorm(P: VitParams, cfg: VitConfig, x: Tensor, name: string): Tensor {
  return P.g.layerNorm(x, P.get(`${name}.weight`), P.get(`${name}.bias`), cfg.lnEps);
}

export function vitBlock(P: VitParams, cfg: VitConfig, i: number, x: Tensor): Tensor {
  const g = P.g;
  x = g.add(x, vitAttention(P, cfg, i, layerNorm(P, cfg, x, `blocks.${i}.norm1`)));
  return g.add(x, vitMlp(P, cfg, i, layerNorm(P, cfg, x, `blocks.${i}.norm2`)));
}

export interface VitOutputs {
  /** Final-norm class token [B, D]. */
  features: Tensor;
  /** Head logits [B, C], when the weights have a head. */
  logits?: Tensor;
}

/** The whole backbone with its own head: images [B, C, S, S] (normalised). */
export function vitForward(P: VitParams, cfg: VitConfig, images: Tensor): VitOutputs {
  const g = P.g;
  let x = vitEmbed(P, cfg, images);
  for (let i = 0; i < cfg.depth; i++) x = vitBlock(P, cfg, i, x);
  const cls = g.reshape(g.slice(x, 1, 0, 1), [-1, cfg.dim]);
  const features = layerNorm(P, cfg, cls, 'norm');
  const logits = P.has('head.weight') ? P.linear(features, 'head.weight', 'head.bias') : undefined;
  return { features, logits };
}

/**
 * Prepares canonical weights for a config: checks shapes and resamples the position embedding
 * when the image size implies another patch grid than the checkpoint's.
 */
export function prepareWeights(cfg: VitConfig, tensors: Map<string, HostTensor>): Map<string, HostTensor> {
  const G = gridSize(cfg);
  const out = new Map(tensors);
  if (G !== cfg.posGrid) {
    out.set('pos_embed', resamplePosEmbed(out.get('pos_embed')!, cfg.posGrid, G));
  }
  const want = canonicalShapes({ ...cfg, posGrid: G });
  for (const [name, shape] of want) {
    const t = out.get(name);
    if (!t) throw new Error(`missing weight '${name}' ${shapeStr(shape)}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new Error(`weight '${name}': expected ${shapeStr(shape)}, found ${shapeStr(t.shape)}`);
    if (t.dtype !== 'float32') throw new Error(`weight '${name}' must be float32 here, found ${t.dtype}`);
  }
  return out;
}

/**
 * Resamples a [1, 1 + G0*G0, D] position embedding to a G1 x G1 grid like timm's
 * resample_abs_pos_embed: the class-token entry is kept, the grid [1, D, G0, G0] goes through
 * PyTorch's F.interpolate(mode='bicubic', align_corners=False) to [1, D, G1, G1]. timm passes
 * antialias=True (its default, and what checkpoint loading uses): PyTorch then takes Pillow's
 * antialiased bicubic (a = -0.5; support widened by G0/G1 when downsampling, so every old grid
 * cell contributes; edge taps dropped and renormalised). antialias=false is plain bicubic
 * (a = -0.75, 4 taps, edge clamping).
 */
export function resamplePosEmbed(pos: HostTensor, G0: number, G1: number, antialias = true): HostTensor {
  const D = pos.shape[2];
  if (pos.shape[1] !== 1 + G0 * G0)
    throw new Error(`pos_embed ${shapeStr(pos.shape)} does not hold a ${G0}x${G0} grid plus a class token`);
  const src = pos.data as Float32Array;
  const out = new Float32Array((1 + G1 * G1) * D);
  out.set(src.subarray(0, D), 0);
  const taps = antialias ? antialiasTaps(G0, G1) : bicubicTaps(G0, G1);
  // Separable: rows first into tmp [G1, G0, D], then columns.
  const tmp = new Float64Array(G1 * G0 * D);
  for (let oy = 0; oy < G1; oy++) {
    const { idx, w } = taps[oy];
    for (let x = 0; x < G0; x++)
      for (let k = 0; k < idx.length; k++) {
        const s = (1 + idx[k] * G0 + x) * D;
        const t = (oy * G0 + x) * D;
        for (let d = 0; d < D; d++) tmp[t + d] += w[k] * src[s + d];
      }
  }
  for (let oy = 0; oy < G1; oy++)
    for (let ox = 0; ox < G1; ox++) {
      const { idx, w } = taps[ox];
      const t = (1 + oy * G1 + ox) * D;
      for (let k = 0; k < idx.length; k++) {
        const s = (oy * G0 + idx[k]) * D;
        for (let d = 0; d < D; d++) out[t + d] += w[k] * tmp[s + d];
      }
    }
  return { dtype: 'float32', shape: [1, 1 + G1 * G1, D], data: out };
}

/** PyTorch's antialiased bicubic taps per output index: Pillow's weights (resample.ts). */
function antialiasTaps(n0: number, n1: number): { idx: number[]; w: number[] }[] {
  const { ksize, xmin, count, w } = antialiasWeights(n0, n1, 'bicubic');
  const res: { idx: number[]; w: number[] }[] = [];
  for (let o = 0; o < n1; o++) {
    const idx: number[] = [];
    const wo: number[] = [];
    for (let j = 0; j < count[o]; j++) {
      idx.push(xmin[o] + j);
      wo.push(w[o * ksize + j]);
    }
    res.push({ idx, w: wo });
  }
  return res;
}

function cubic(x: number, A = -0.75): number {
  x = Math.abs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

function bicubicTaps(n0: number, n1: number): { idx: number[]; w: number[] }[] {
  const scale = n0 / n1;
  const res: { idx: number[]; w: number[] }[] = [];
  for (let o = 0; o < n1; o++) {
    const s = (o + 0.5) * scale - 0.5; // align_corners=False; not clamped for cubic (PyTorch)
    const i0 = Math.floor(s);
    const t = s - i0;
    const idx: number[] = [];
    const w: number[] = [];
    for (let k = -1; k <= 2; k++) {
      idx.push(Math.min(Math.max(i0 + k, 0), n0 - 1));
      w.push(cubic(k - t));
    }
    res.push({ idx, w });
  }
  return res;
}

/** Number of weights in the canonical tensors (for reports). */
export function countParams(tensors: Map<string, HostTensor>): number {
  let n = 0;
  for (const t of tensors.values()) n += numel(t.shape);
  return n;
}
