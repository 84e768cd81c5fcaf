// Early-exit inference as a chain of segments: segment j runs the layers up to exit j's layer
// and returns that exit's class probabilities plus the token state the next segment continues
// from. Samples that exit leave the batch between segments, so saved GFLOPs become saved time.
//
//   segment 0: images [B, C, S, S] -> probs_1 [B, C], state [B, k + N, D]
//   segment j: state_in [B, T_j, D] -> probs_{j+1},    state (absent for the last segment)
//
// Regression runs (model/regression.ts) output `value` [B, 1] (in the targets' units) instead of
// `probs`, and early exiting uses the agreement between consecutive exits as the confidence
// instead of the max probability (ExitConfidence).

import { Graph, type Tensor } from '../graph/ir';
import { compile, type CompiledModel } from '../graph/onnx';
import type { VitConfig } from '../model/config';
import { type MetConfig, metEmbed, metLayers, MetTensors } from '../model/met';
import { isRegression, toTargetUnits } from '../model/regression';
import { VitParams } from '../model/vit';
import { Session, type SessionOptions } from '../runtime/session';
import type { HostTensor } from '../tensor';
import { countMacs } from './flops';

export interface SegmentModel {
  model: CompiledModel;
  /** Layers run by this segment (1-based, inclusive). */
  layers: [number, number];
  /** Multiply-adds per image (fvcore convention: matrix products only). */
  macs: number;
  /** Tokens in the state this segment hands on (0 for the last). */
  stateTokens: number;
  /** Its exit's output: class probabilities, or a regression value [B, 1]. */
  output: 'probs' | 'value';
}

/**
 * How a runner scores an exit for early exiting: `max-prob`, the largest class probability
 * (classification); `agreement`, -|y_j - y_{j-1}| between this exit's value and the previous
 * exit's (regression; NaN at the first exit, which therefore never takes a sample).
 */
export type ExitConfidence = 'max-prob' | 'agreement';

/**
 * Builds the segment models of a MET network. With `bake`, MET's tensors become constants
 * (an export that needs no feeds but the data); otherwise they are graph inputs. `cpuOnly`: the
 * segments run in this engine on onnxruntime's CPU provider alone (CompileOptions.cpuContribOps);
 * never for an export, which keeps to standard ONNX.
 */
export function buildSegments(
  cfg: VitConfig,
  m: MetConfig,
  backbone: Map<string, HostTensor>,
  met: Map<string, HostTensor>,
  bake = true,
  cpuOnly = false,
): SegmentModel[] {
  const segs: SegmentModel[] = [];
  const K = m.exits.length;
  let prev = 0;
  let tokens = 0;
  for (let j = 0; j < K; j++) {
    const g = new Graph();
    const P = new VitParams(g, backbone);
    const T = new MetTensors(g, met, !bake);
    let state;
    if (j === 0) {
      const images = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
      state = metEmbed(g, P, cfg, m, images);
    } else {
      state = { seq: g.input('state_in', ['B', tokens, cfg.dim]), nextLayer: prev + 1 };
    }
    const { state: next, out } = metLayers(g, P, T, cfg, m, state, m.exits[j]);
    const head = out.logits[out.logits.length - 1];
    const output = isRegression(m) ? 'value' : 'probs';
    const outs: Record<string, Tensor> =
      output === 'value' ? { value: toTargetUnits(g, m, head) } : { probs: g.softmax(head, -1) };
    const last = j === K - 1;
    if (!last) outs.state = next.seq;
    const macs = countMacs(Object.values(outs), 1);
    segs.push({
      model: compile(g, outs, { name: `met_segment_${j + 1}`, cpuContribOps: cpuOnly }),
      layers: [prev + 1, m.exits[j]],
      macs,
      stateTokens: last ? 0 : (next.seq.shape[1] as number),
      output,
    });
    prev = m.exits[j];
    tokens = last ? 0 : (next.seq.shape[1] as number);
  }
  return segs;
}

/** Cumulative GFLOPs (fvcore convention) to reach each exit through the segments. */
export function cumulativeGflops(segs: SegmentModel[]): number[] {
  let acc = 0;
  return segs.map((s) => (acc += s.macs) / 1e9);
}

export interface ExitOutputs {
  /** Per exit: probabilities [n, C] (row-major); for regression the values [n] (C = 1). */
  probs: Float32Array[];
}

export class SegmentRunner {
  private constructor(
    readonly segments: SegmentModel[],
    readonly sessions: Session[],
    readonly feeds: Record<string, HostTensor>,
    readonly numClasses: number,
  ) {}

  /** The confidence used for early exiting, from what the segments output. */
  get confidence(): ExitConfidence {
    return this.segments[0]?.output === 'value' ? 'agreement' : 'max-prob';
  }

  static async create(
    segs: SegmentModel[],
    numClasses: number,
    met: Map<string, HostTensor> | null,
    opts: SessionOptions = {},
  ): Promise<SegmentRunner> {
    const sessions: Session[] = [];
    for (const s of segs) sessions.push(await Session.create(s.model, opts));
    const feeds: Record<string, HostTensor> = {};
    if (met) for (const [k, v] of met) feeds[k] = v;
    return new SegmentRunner(segs, sessions, feeds, numClasses);
  }

  private async runSeg(j: number, input: HostTensor): Promise<{ probs: Float32Array; state?: HostTensor }> {
    const s = this.sessions[j];
    const feeds: Record<string, HostTensor> = { [j === 0 ? 'images' : 'state_in']: input };
    for (const inp of s.model.inputs) if (inp.name in this.feeds) feeds[inp.name] = this.feeds[inp.name];
    const r = await s.run(feeds);
    return { probs: (r.probs ?? r.value).data as Float32Array, state: r.state };
  }

  /** Every exit's probabilities for a batch (no early exiting). */
  async allExits(images: HostTensor): Promise<ExitOutputs> {
    const probs: Float32Array[] = [];
    let input = images;
    for (let j = 0; j < this.sessions.length; j++) {
      const r = await this.runSeg(j, input);
      probs.push(r.probs);
      if (r.state) input = r.state;
    }
    return { probs };
  }

  /**
   * Budgeted early exiting: a sample leaves at the first exit whose confidence (max probability,
   * or for regression the agreement with the previous exit) reaches that exit's threshold (the
   * last exit takes the rest). Exited samples leave the batch before the
   * next segment runs. Returns, per sample, the exit taken (0-based) and its probabilities.
   */
  async dynamic(images: HostTensor, thresholds: number[]): Promise<{ exitOf: Int32Array; probs: Float32Array }> {
    const n = images.shape[0];
    const C = this.numClasses;
    const exitOf = new Int32Array(n).fill(-1);
    const probs = new Float32Array(n * C);
    let idx = Array.from({ length: n }, (_, i) => i); // original indices of the rows still running
    let input = images;
    const agreement = this.confidence === 'agreement';
    let prev: Float32Array | null = null; // regression: the previous exit's values of the rows still running
    for (let j = 0; j < this.sessions.length && idx.length; j++) {
      const r = await this.runSeg(j, input);
      const last = j === this.sessions.length - 1;
      const keep: number[] = [];
      for (let row = 0; row < idx.length; row++) {
        let mx = 0;
        // fround: the same float32 score that agreementConfidence stores and thresholds are fitted on.
        if (agreement) mx = prev ? Math.fround(-Math.abs(r.probs[row] - prev[row])) : NaN;
        else for (let c = 0; c < C; c++) mx = Math.max(mx, r.probs[row * C + c]);
        if (last || mx >= thresholds[j]) {
          exitOf[idx[row]] = j;
          probs.set(r.probs.subarray(row * C, (row + 1) * C), idx[row] * C);
        } else keep.push(row);
      }
      if (!keep.length || last) break;
      input = gatherRows(r.state!, keep);
      if (agreement) prev = Float32Array.from(keep, (row) => r.probs[row]);
      idx = keep.map((row) => idx[row]);
    }
    return { exitOf, probs };
  }

  async release(): Promise<void> {
    for (const s of this.sessions) await s.release();
  }
}

/** Rows `rows` of a [B, ...] tensor. */
export function gatherRows(t: HostTensor, rows: number[]): HostTensor {
  const per = t.data.length / t.shape[0];
  const src = t.data as Float32Array;
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per), i * per));
  return { dtype: t.dtype, shape: [rows.length, ...t.shape.slice(1)], data: out };
}

/** Max probability and argmax of each row of [n, C] probabilities. */
export function confidences(probs: Float32Array, C: number): { conf: Float32Array; pred: Int32Array } {
  const n = probs.length / C;
  const conf = new Float32Array(n);
  const pred = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (probs[i * C + c] > probs[i * C + best]) best = c;
    conf[i] = probs[i * C + best];
    pred[i] = best;
  }
  return { conf, pred };
}
