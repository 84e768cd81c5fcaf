// 'inspect/attention': where each exit's token looks, for one image ("Explain an exit" in the
// Inspect exits panel). Two maps per exit j over the G x G patch grid:
//
//   last     the attention of exit j's token at its exit layer l_j (the last layer it passes),
//            averaged over heads, patch columns only;
//   rollout  attention rollout (Abnar & Zuidema 2020): Ā_l = 0.5 mean_heads(A_l) + 0.5 I, each
//            row renormalised to sum 1, R = Ā_{l_j} ··· Ā_1, exit j's token's row of R, patch
//            columns only.
//
// The probabilities are the ones the model computes: the network is built by the engine's own
// metForward (model/met.ts), with the run's exit-key bias (-log k) and attention mask, and the
// per-layer softmax outputs become graph outputs through its attention hook (MetHooks). A graph
// built without the hook is unchanged, so nothing else pays for this.
//
// MET's sequence changes length: layer l holds [c_j for j in A_l; X], k_l exit tokens in front of
// the N patches, and exit j's token leaves after layer l_j (docs/method.md §1.2), always the first
// one. The rollout is carried over the tokens present: R has one row per token present after
// the last layer computed and one column per token that entered layer 1 (K exit tokens, then the
// patches). Before layer l the rows of the tokens that left are dropped (the first rows of R,
// since tokens leave from the front), so Ā_l [k_l + N, k_l + N] multiplies exactly the rows of
// the tokens it mixes. Exit j's row is read right after layer l_j, so it only involves layers
// 1..l_j, during all of which its token is present. Columns never change: mass that flowed
// from an exit token before it left stays in that token's column, so every row of R still sums
// to 1 over all K + N columns; the map keeps only the N patch columns.
// (scripts/make_attention_fixtures.py computes the same rows the other way round, over the full
// [K + N, K + N] id space, updating only present rows; test/explore-attention.test.ts holds the
// two together.)

import type { AttentionParams, AttentionResult, ExitAttention } from './types';
import { loadBatch, type Preprocess } from '../data/image';
import { Graph, type Tensor } from '../graph/ir';
import { compile } from '../graph/onnx';
import type { VitConfig } from '../model/config';
import { activeAt, hasAdapters, type MetConfig, metForward, MetTensors } from '../model/met';
import { gridSize, VitParams } from '../model/vit';
import { Session, type SessionOptions } from '../runtime/session';
import { type HostTensor, UserError } from '../tensor';
import type { RunCache } from './runCache';

/** One layer's attention probabilities, as the graph returns them. */
export interface LayerAttention {
  /** 1-based layer. */
  layer: number;
  /** [B, H, nq, T] row-major: softmax over the T keys of the first nq queries. */
  probs: Float32Array;
  B: number;
  H: number;
  nq: number;
  T: number;
  /** Tokens in front of the patches in this layer: k_l exit tokens (1: the class token of a
   *  linear probe). */
  front: number;
}

/** An exit's maps with the rest of each row: the exit-token columns (for checks and tests). */
export interface ExitAttentionFull extends ExitAttention {
  /** [k_{l_j}]: exit j's attention at layer l_j on the exit tokens present there. */
  lastTokens: Float32Array;
  /** [K1]: the rollout row's mass on the tokens in front of the patches at layer 1. */
  rolloutTokens: Float32Array;
}

/** Tokens in front of the patches in layer l: k_l (docs/method.md §1.2), or 1 without adapters. */
export function frontAt(m: MetConfig, l: number): number {
  return hasAdapters(m) ? activeAt(m.exits, l) : 1;
}

/**
 * The maps of every exit for image `b` of a batch, from each layer's probabilities (layers
 * 1..l_K in order). Pure: the golden test feeds it the engine's own graph outputs.
 */
export function exitMaps(m: MetConfig, layers: LayerAttention[], N: number, b = 0): ExitAttentionFull[] {
  const lastExit = m.exits[m.exits.length - 1];
  if (layers.length !== lastExit)
    throw new Error(`exitMaps: ${layers.length} layers of attention for exits up to layer ${lastExit}`);
  const K1 = frontAt(m, 1);
  const T1 = K1 + N;
  // R [rows, T1], float64: rows = the tokens present after the layer just done (in sequence
  // order), columns = the tokens that entered layer 1. Identity before layer 1.
  let R = new Float64Array(T1 * T1);
  for (let i = 0; i < T1; i++) R[i * T1 + i] = 1;
  let rows = T1;
  const out: ExitAttentionFull[] = [];
  for (const a of layers) {
    const l = a.layer;
    const front = frontAt(m, l);
    const T = front + N;
    if (a.T !== T) throw new Error(`exitMaps: layer ${l} has ${a.T} keys, expected ${front} + ${N}`);
    if (a.nq < T && l !== lastExit) throw new Error(`exitMaps: layer ${l} has only ${a.nq} of ${T} queries`);
    if (b < 0 || b >= a.B) throw new Error(`exitMaps: image ${b} of a batch of ${a.B}`);
    // The tokens that left after earlier layers are the first rows (exit tokens leave from the front).
    const drop = rows - T;
    if (drop < 0) throw new Error(`exitMaps: layer ${l} has more tokens (${T}) than the layer before (${rows})`);
    // M = mean over heads [nq, T]
    const nq = a.nq;
    const M = new Float64Array(nq * T);
    for (let h = 0; h < a.H; h++) {
      const base = (b * a.H + h) * nq * T;
      for (let i = 0; i < nq * T; i++) M[i] += a.probs[base + i];
    }
    for (let i = 0; i < nq * T; i++) M[i] /= a.H;
    // R_new [nq, T1] = Ā [nq, T] · R[drop:] [T, T1],  Ā = 0.5 M + 0.5 I, rows renormalised
    const Rn = new Float64Array(nq * T1);
    const abar = new Float64Array(T);
    for (let q = 0; q < nq; q++) {
      let s = 0;
      for (let c = 0; c < T; c++) {
        abar[c] = 0.5 * M[q * T + c] + (q === c ? 0.5 : 0);
        s += abar[c];
      }
      const dst = q * T1;
      for (let c = 0; c < T; c++) {
        const w = abar[c] / s;
        if (w === 0) continue; // masked keys (-1e9 logits) carry exactly nothing
        const src = (drop + c) * T1;
        for (let t = 0; t < T1; t++) Rn[dst + t] += w * R[src + t];
      }
    }
    R = Rn;
    rows = nq;
    const j = m.exits.indexOf(l);
    if (j < 0) continue;
    // Exit j's token is the first of the sequence in its own layer (row 0).
    out.push({
      exit: j,
      layer: l,
      last: Float32Array.from(M.subarray(front, T)),
      lastTokens: Float32Array.from(M.subarray(0, front)),
      rollout: Float32Array.from(R.subarray(K1, T1)),
      rolloutTokens: Float32Array.from(R.subarray(0, K1)),
    });
  }
  return out;
}

/** The network up to the last exit with each layer's attention probabilities as outputs. */
export class AttentionModel {
  private constructor(
    private readonly session: Session,
    readonly vit: VitConfig,
    readonly met: MetConfig,
    /** Output name and front tokens per layer 1..l_K. */
    private readonly layers: { name: string; layer: number; front: number }[],
  ) {}

  static async create(
    vit: VitConfig,
    met: MetConfig,
    backbone: Map<string, HostTensor>,
    params: Map<string, HostTensor>,
    so: SessionOptions = {},
  ): Promise<AttentionModel> {
    const g = new Graph();
    const P = new VitParams(g, backbone);
    const T = new MetTensors(g, params, false);
    const images = g.input('images', ['B', vit.channels, vit.imageSize, vit.imageSize]);
    const outs: Record<string, Tensor> = {};
    const layers: { name: string; layer: number; front: number }[] = [];
    metForward(g, P, T, vit, met, images, {
      attention: (layer, probs) => {
        const name = `attn_${layer}`;
        outs[name] = probs; // (B, H, nq, T)
        layers.push({ name, layer, front: frontAt(met, layer) });
      },
    });
    const session = await Session.create(compile(g, outs, { name: 'met_attention' }), so);
    return new AttentionModel(session, vit, met, layers);
  }

  /** Patch tokens N = G². */
  get N(): number {
    return gridSize(this.vit) ** 2;
  }

  /** Every layer's probabilities for images [B, C, S, S] (normalised as the run's preprocessing does). */
  async run(images: HostTensor): Promise<LayerAttention[]> {
    const r = await this.session.run(
      { images },
      this.layers.map((x) => x.name),
    );
    return this.layers.map(({ name, layer, front }) => {
      const t = r[name];
      const [B, H, nq, T] = t.shape as number[];
      return { layer, probs: t.data as Float32Array, B, H, nq, T, front };
    });
  }

  /** The maps of every exit for one preprocessed image [1, C, S, S]. */
  async maps(image: HostTensor): Promise<ExitAttentionFull[]> {
    return exitMaps(this.met, await this.run(image), this.N, 0);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The preprocessed image [C, S, S] back to RGBA bytes (x * std + mean, clamped to [0, 1]). */
export function toRgba(x: Float32Array, pre: Preprocess): Uint8Array {
  const S = pre.imageSize;
  const C = pre.channels;
  const out = new Uint8Array(S * S * 4);
  for (let i = 0; i < S * S; i++) {
    for (let k = 0; k < 3; k++) {
      const c = C === 1 ? 0 : k;
      const m = pre.mean.length === 1 ? pre.mean[0] : pre.mean[c];
      const sd = pre.std.length === 1 ? pre.std[0] : pre.std[c];
      const v = x[c * S * S + i] * sd + m;
      out[i * 4 + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}

/** 'inspect/attention': both maps of every exit of the run `runDir` for the image `file`. */
export async function computeAttention(
  cache: RunCache,
  p: AttentionParams,
  so: SessionOptions = {},
): Promise<AttentionResult> {
  if (!p || typeof p.runDir !== 'string' || !p.runDir)
    throw new UserError('inspect/attention: runDir (a run folder) is required');
  if (typeof p.file !== 'string' || !p.file) throw new UserError('inspect/attention: file (an image path) is required');
  return cache.with(p.runDir, async ({ predictor: rp, extra }) => {
    const model = await extra(
      'attention',
      (r) => AttentionModel.create(r.vit, r.met, r.backbone, r.params, so),
      (x) => x.release(),
    );
    const batch = await loadBatch([p.file], rp.pre);
    if (!batch.ok.length) throw new UserError(`${p.file}: ${batch.failed[0]?.reason ?? 'unreadable'}`);
    const S = rp.vit.imageSize;
    const C = rp.vit.channels;
    const image: HostTensor = { dtype: 'float32', shape: [1, C, S, S], data: batch.data.subarray(0, C * S * S) };
    const maps = await model.maps(image);
    const G = gridSize(rp.vit);
    return {
      file: p.file,
      grid: [G, G],
      heads: rp.vit.heads,
      size: S,
      image: toRgba(batch.data, rp.pre),
      exits: maps.map(({ exit, layer, last, rollout }) => ({ exit, layer, last, rollout })),
    };
  });
}
