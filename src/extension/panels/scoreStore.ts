// Inspect exits, the score store: the engine's 'inspect/score' answers for a source of images,
// kept on the host so that a webview rebuilt after being hidden gets them without asking again,
// and the order in which images are scored (the rows on screen first, then the rest). No
// `vscode` here: the panel (inspect.ts) sends what it returns.
//
// Layout: image-major, as the engine's ScoreResult (src/engine/explore/types.ts) and every score
// array of the Inspect protocol: n images, K exits, k = TOP_K classes kept per exit:
//   conf, pred, value  [n * K]      image i at exit j: i * K + j
//   topProb, topClass  [n * K * k]  rank t of image i at exit j: (i * K + j) * k + t

import type { ScoreResult } from '../../engine/explore/types';
import type { ScoresMessage } from '../../../webview-ui/inspect/protocol';

/** Classes kept per exit for the grid's images and the selected one. */
export const TOP_K = 3;

/** The rows on screen (inclusive; last < first: none yet). */
export interface VisibleRows {
  first: number;
  last: number;
}

/** The scores of one image, for the detail view. */
export interface ImageScores {
  conf: Float32Array;
  pred: Int32Array;
  topProb: Float32Array;
  topClass: Int32Array;
  k: number;
  value?: Float32Array;
}

export class ScoreStore {
  private K = 0;
  private regression = false;
  /** [n] 0 to do, 1 in flight, 2 done (ok or unreadable). */
  private state = new Uint8Array(0);
  private ok = new Uint8Array(0);
  private conf = new Float32Array(0);
  private pred = new Int32Array(0);
  private value = new Float32Array(0);
  private topProb = new Float32Array(0);
  private topClass = new Int32Array(0);
  /** Images scored (readable) so far. */
  scored = 0;
  /** Every image before it is done (the background order). */
  private cursor = 0;

  /**
   * A fresh store for n images of a K-exit run. `stored`: the scores came with the images (the
   * test split's predictions.json), so nothing is kept or asked for here.
   */
  reset(n: number, K: number, stored: boolean, regression: boolean): void {
    this.K = K;
    this.regression = regression;
    this.state = new Uint8Array(n).fill(stored ? 2 : 0);
    this.ok = new Uint8Array(n).fill(stored ? 1 : 0);
    this.conf = new Float32Array(stored ? 0 : n * K).fill(NaN);
    this.pred = new Int32Array(stored ? 0 : n * K).fill(-1);
    this.value = new Float32Array(stored || !regression ? 0 : n * K).fill(NaN);
    this.topProb = new Float32Array(stored ? 0 : n * K * TOP_K).fill(NaN);
    this.topClass = new Int32Array(stored ? 0 : n * K * TOP_K).fill(-1);
    this.scored = stored ? n : 0;
    this.cursor = 0;
  }

  get size(): number {
    return this.state.length;
  }

  isDone(i: number): boolean {
    return this.state[i] === 2;
  }

  allDone(): boolean {
    return this.state.every((s) => s === 2);
  }

  /** Indices of the images done so far (to send again to a rebuilt webview). */
  doneIndices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.state.length; i++) if (this.state[i] === 2) out.push(i);
    return out;
  }

  /** The next images to score (at most `max`), marked in flight: those on screen first, then the rest in order. */
  take(visible: VisibleRows, max: number): number[] {
    const n = this.state.length;
    const out: number[] = [];
    for (let i = visible.first; i <= Math.min(n - 1, visible.last) && out.length < max; i++)
      if (!this.state[i]) out.push(i);
    if (!out.length) {
      while (this.cursor < n && this.state[this.cursor]) this.cursor++;
      for (let i = this.cursor; i < n && out.length < max; i++) if (!this.state[i]) out.push(i);
    }
    out.forEach((i) => (this.state[i] = 1));
    return out;
  }

  /** The request for `chunk` failed: its images are to do again. */
  release(chunk: number[]): void {
    chunk.forEach((i) => (this.state[i] = 0));
  }

  /** The engine's answer for `chunk` (r's rows in chunk's order; r's k may differ from TOP_K). */
  put(chunk: number[], r: ScoreResult): void {
    const K = this.K;
    const k = r.topProb.length / Math.max(1, chunk.length * K);
    chunk.forEach((i, row) => {
      this.state[i] = 2;
      this.ok[i] = r.ok[row];
      if (!r.ok[row]) return;
      this.scored++;
      this.conf.set(r.conf.subarray(row * K, (row + 1) * K), i * K);
      this.pred.set(r.pred.subarray(row * K, (row + 1) * K), i * K);
      if (r.value && this.value.length) this.value.set(r.value.subarray(row * K, (row + 1) * K), i * K);
      for (let j = 0; j < K; j++)
        for (let t = 0; t < Math.min(k, TOP_K); t++) {
          this.topProb[(i * K + j) * TOP_K + t] = r.topProb[(row * K + j) * k + t];
          this.topClass[(i * K + j) * TOP_K + t] = r.topClass[(row * K + j) * k + t];
        }
    });
  }

  /** The 'scores' message for these images (rows in `index` order, image-major). */
  message(index: number[]): ScoresMessage {
    const K = this.K;
    const m = index.length;
    const conf = new Float32Array(m * K);
    const pred = new Int32Array(m * K);
    const tp = new Float32Array(m * K * TOP_K);
    const tc = new Int32Array(m * K * TOP_K);
    const value = this.regression ? new Float32Array(m * K) : undefined;
    index.forEach((i, r) => {
      value?.set(this.value.subarray(i * K, (i + 1) * K), r * K);
      conf.set(this.conf.subarray(i * K, (i + 1) * K), r * K);
      pred.set(this.pred.subarray(i * K, (i + 1) * K), r * K);
      tp.set(this.topProb.subarray(i * K * TOP_K, (i + 1) * K * TOP_K), r * K * TOP_K);
      tc.set(this.topClass.subarray(i * K * TOP_K, (i + 1) * K * TOP_K), r * K * TOP_K);
    });
    return {
      type: 'scores',
      index: Int32Array.from(index),
      ok: Uint8Array.from(index, (i) => this.ok[i]),
      conf,
      pred,
      k: this.regression ? 0 : TOP_K,
      topProb: tp,
      topClass: tc,
      ...(value ? { value } : {}),
      scored: this.scored,
      total: this.state.length,
    };
  }

  /** Image i's kept scores (copies), or null when it has none here (not scored yet, unreadable, or stored). */
  scoresOf(i: number): ImageScores | null {
    if (!this.conf.length || this.state[i] !== 2 || !this.ok[i]) return null;
    const K = this.K;
    return {
      conf: this.conf.slice(i * K, (i + 1) * K),
      pred: this.pred.slice(i * K, (i + 1) * K),
      topProb: this.topProb.slice(i * K * TOP_K, (i + 1) * K * TOP_K),
      topClass: this.topClass.slice(i * K * TOP_K, (i + 1) * K * TOP_K),
      k: this.regression ? 0 : TOP_K,
      ...(this.regression ? { value: this.value.slice(i * K, (i + 1) * K) } : {}),
    };
  }
}
