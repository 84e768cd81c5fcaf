// The Inspect exits webview's model: the images' per-exit scores as they arrive, the summary's
// groups, the static accuracy per exit, the thresholds of the slider's point applied to the
// scored images (the engine's applyThresholds), and the grid's keyboard moves. No DOM (the
// views in main.ts and views/ draw it), so it is unit-tested under Node
// (test/inspect-model.test.ts).
//
// Layout: the messages are image-major (protocol.ts: value of image i at exit j at i * K + j);
// the model keeps one array per exit, conf[j][i] ([K][n]), which is what applyThresholds takes
// (ExitScores: one array per used exit over the images).

import { applyThresholds, type ExitScores, type ThresholdResult } from '../../src/engine/infer/thresholds';
import type { Curve, HostMessage, InitMessage, RenderedSnapshot, ScoresMessage } from './protocol';
import { fmtV } from './format';

export type DetailMessage = Extract<HostMessage, { type: 'detail' }>;
export type ChosenMessage = Extract<HostMessage, { type: 'chosen' }>;

/** Top-k per exit of one image: [K * k] classes and probabilities. */
export interface TopK {
  k: number;
  prob: Float32Array;
  cls: Int32Array;
}

const emptyCurve = (): Curve => ({
  p: new Float64Array(0),
  thresholds: new Float64Array(0),
  accuracy: new Float64Array(0),
  gflops: new Float64Array(0),
});

export class InspectModel {
  init: InitMessage | null = null;
  /** Exits of the run, exits used by budgeted inference, images. */
  K = 0;
  M = 0;
  n = 0;
  /** [M] 0-based exits used by budgeted inference. */
  used: Int32Array = new Int32Array(0);
  curve: Curve = emptyCurve();
  /** The saved point (index into the curve) and where it came from. */
  chosen = 0;
  chosenSource = '';
  /** Per exit (all K), [n]: confidence (NaN until scored) and class (-1). */
  conf: Float32Array[] = [];
  pred: Int32Array[] = [];
  // Regression runs (init.task): each exit's value (NaN until scored), the images' targets (NaN:
  // unknown), and the colour scale of agreement and error (target units). `conf` then holds the
  // agreement with the previous exit (NaN at exit 1), what the run's thresholds apply to.
  reg = false;
  val: Float32Array[] = [];
  target: Float64Array = new Float64Array(0);
  scale = 1;
  /** Summary groups: the classes, or for regression the target values (or ranges of them). */
  groupNames: string[] = [];
  /** [n] group of each image (-1: no label / no target). */
  groupOf: Int32Array = new Int32Array(0);
  /** [n] 0 not scored, 1 scored, 2 unreadable. */
  scoredMask = new Uint8Array(0);
  scored = 0;
  /** Top-k per exit of images the host scored with top-k. */
  readonly tops = new Map<number, TopK>();
  /** Bumped whenever scores change: rows re-fill their cells. */
  dataVersion = 0;
  /** The current slider position (index into the curve). */
  point = 0;
  /** applyThresholds over the scored images for the current point; exitOf[i] per image (-1: not scored). */
  dyn: { res: ThresholdResult | null; exitOf: Int32Array } = { res: null, exitOf: new Int32Array(0) };
  /** Static accuracy per exit (all K) over the labelled scored images (regression: -MAE). */
  exitAcc: (number | null)[] = [];
  /** Per group: images, where they exit (per used exit), accuracy under the thresholds. */
  classStats: RenderedSnapshot['classes'] = [];
  /** Per group and exit (all K): static accuracy. */
  classExitAcc: (number | null)[][] = [];

  /**
   * A new run or source: the images, their stored scores (test split) and the groups. `point`:
   * the slider position to restore (kept in the webview's state), when it is on the curve;
   * otherwise the saved point.
   */
  load(m: InitMessage, point?: number): void {
    this.init = m;
    const K = (this.K = m.layers.length);
    this.M = m.used.length;
    const n = (this.n = m.files.length);
    this.used = m.used;
    this.curve = m.curve;
    this.chosen = m.chosen;
    this.chosenSource = m.chosenSource;
    this.conf = Array.from({ length: K }, () => new Float32Array(n).fill(NaN));
    this.pred = Array.from({ length: K }, () => new Int32Array(n).fill(-1));
    this.reg = m.task === 'regression';
    this.val = this.reg ? Array.from({ length: K }, () => new Float32Array(n).fill(NaN)) : [];
    this.target = this.reg && m.targets ? m.targets : new Float64Array(n).fill(NaN);
    this.scale = this.reg && m.targetScale && Number.isFinite(m.targetScale) && m.targetScale > 0 ? m.targetScale : 1;
    this.scoredMask = new Uint8Array(n);
    this.scored = 0;
    this.tops.clear();
    if (m.conf && m.pred) {
      // Stored scores, [n * K] image-major. Regression: conf is the agreement the host computed
      // from the values (exitScores' rule).
      const value = this.reg ? m.value : undefined;
      for (let i = 0; i < n; i++)
        for (let j = 0; j < K; j++) {
          this.conf[j][i] = m.conf[i * K + j];
          this.pred[j][i] = m.pred[i * K + j];
          if (value) this.val[j][i] = value[i * K + j];
        }
      this.scoredMask.fill(1);
      this.scored = n;
    }
    this.buildGroups();
    const P = this.curve.p.length;
    this.point = point !== undefined && point >= 0 && point < P ? point : this.chosen;
    this.dataVersion++;
    this.buildStatic();
    this.recompute();
  }

  /** Scores of some images from the engine ([m * K] image-major over m.index). */
  addScores(m: ScoresMessage): void {
    if (!this.init) return;
    const { K, n } = this;
    const k = m.k;
    for (let r = 0; r < m.index.length; r++) {
      const i = m.index[r];
      if (i < 0 || i >= n) continue;
      if (!m.ok[r]) {
        this.scoredMask[i] = 2; // unreadable: never scored, shown as such
        continue;
      }
      for (let j = 0; j < K; j++) {
        this.conf[j][i] = m.conf[r * K + j];
        this.pred[j][i] = m.pred[r * K + j];
        if (this.reg && m.value) this.val[j][i] = m.value[r * K + j];
      }
      if (!this.scoredMask[i] || this.scoredMask[i] === 2) this.scored++;
      this.scoredMask[i] = 1;
      if (k > 0)
        this.tops.set(i, {
          k,
          prob: m.topProb.slice(r * K * k, (r + 1) * K * k),
          cls: m.topClass.slice(r * K * k, (r + 1) * K * k),
        });
    }
    this.dataVersion++;
  }

  /**
   * The selected image's scores ([K], top-k [K * k]). Returns true when they are new scores for
   * the grid (an image scored for the detail before its chunk): the statistics are then stale.
   */
  addDetail(m: DetailMessage): boolean {
    const { K } = this;
    let changed = false;
    if (this.reg && m.value && this.scoredMask[m.index] !== 1 && !m.error) {
      // A regression image scored for the detail before its chunk: its values and agreement.
      for (let j = 0; j < K; j++) {
        this.val[j][m.index] = m.value[j];
        this.conf[j][m.index] = m.conf[j];
      }
      this.scoredMask[m.index] = 1;
      this.scored++;
      this.dataVersion++;
      changed = true;
    }
    if (m.k > 0 && m.topProb.length) {
      this.tops.set(m.index, { k: m.k, prob: m.topProb, cls: m.topClass });
      // A test-split image is scored again for its top-k: keep the stored conf/pred (the grid's).
      if (this.scoredMask[m.index] !== 1) {
        for (let j = 0; j < K; j++) {
          this.conf[j][m.index] = m.conf[j];
          this.pred[j][m.index] = m.pred[j];
        }
        this.scoredMask[m.index] = 1;
        this.scored++;
        this.dataVersion++;
        changed = true;
      }
    }
    return changed;
  }

  /** The run's saved thresholds changed: the curve is rebuilt and the slider goes to the saved point. */
  setChosen(m: ChosenMessage): void {
    this.curve = m.curve;
    this.chosen = m.chosen;
    this.chosenSource = m.chosenSource;
    // Saved from this slider: the point stays where it is (indices are rebuilt on the host).
    this.point = m.chosen;
    this.recompute();
  }

  /** Moves the slider to curve point i. */
  setPoint(i: number): void {
    this.point = i;
    this.recompute();
  }

  /** The thresholds of curve point `i` over the used exits. */
  thresholdsOf(i: number): number[] {
    return Array.from(this.curve.thresholds.subarray(i * this.M, (i + 1) * this.M));
  }

  /** Cumulative GFLOPs of the used exits. */
  cost(): number[] {
    return Array.from(this.used, (j) => this.init!.gflops[j]);
  }

  /**
   * The summary's groups: the classes (each image's label), or for a regression run its target
   * values: one group per value when there are at most 12 (counts, ratings), else 8 equal ranges.
   */
  buildGroups(): void {
    const { init, n, target } = this;
    if (!init) return;
    if (!this.reg) {
      this.groupNames = init.classes;
      this.groupOf = init.labels;
      return;
    }
    const groupOf = (this.groupOf = new Int32Array(n).fill(-1));
    const vals = [...new Set(Array.from(target).filter((t) => Number.isFinite(t)))].sort((a, b) => a - b);
    if (!vals.length) {
      this.groupNames = [];
      return;
    }
    if (vals.length <= 12) {
      this.groupNames = vals.map((v) => `= ${fmtV(v)}`);
      const at = new Map(vals.map((v, g) => [v, g]));
      for (let i = 0; i < n; i++) if (Number.isFinite(target[i])) groupOf[i] = at.get(target[i])!;
      return;
    }
    const lo = vals[0];
    const hi = vals[vals.length - 1];
    const B = 8;
    const w = (hi - lo) / B;
    // Half-open ranges [a, b), the last one closed so that the largest target is in it.
    this.groupNames = Array.from(
      { length: B },
      (_, g) => `[${fmtV(lo + g * w)}, ${fmtV(g === B - 1 ? hi : lo + (g + 1) * w)}${g === B - 1 ? ']' : ')'}`,
    );
    for (let i = 0; i < n; i++)
      if (Number.isFinite(target[i])) groupOf[i] = Math.min(B - 1, Math.floor((target[i] - lo) / w));
  }

  /**
   * How good exit j's answer for image i is: 1 / 0 (right class), or regression -|value - target|,
   * in float32 as exitScores gives it to the budget curve (`f32`), or exact as `met eval`'s MAE.
   */
  quality(j: number, i: number, f32 = true): number {
    if (!this.reg) return this.pred[j][i] === this.init!.labels[i] ? 1 : 0;
    const q = -Math.abs(this.val[j][i] - this.target[i]);
    return f32 ? Math.fround(q) : q;
  }

  /**
   * Static (every exit runs) accuracy per exit, overall and per group, over labelled scored images.
   * Regression: -MAE (higher is better, as the budget curve's `accuracy`); shown as MAE.
   */
  buildStatic(): void {
    const { init, K, n, groupOf, scoredMask } = this;
    if (!init) return;
    const C = this.groupNames.length;
    const right = Array.from({ length: C + 1 }, () => new Float64Array(K));
    const count = new Float64Array(C + 1);
    for (let i = 0; i < n; i++) {
      const y = groupOf[i];
      if (scoredMask[i] !== 1 || y < 0) continue;
      count[y]++;
      count[C]++;
      for (let j = 0; j < K; j++) {
        const q = this.quality(j, i, false);
        right[y][j] += q;
        right[C][j] += q;
      }
    }
    this.exitAcc = Array.from({ length: K }, (_, j) => (count[C] ? right[C][j] / count[C] : null));
    this.classExitAcc = Array.from({ length: C }, (_, c) =>
      Array.from({ length: K }, (_, j) => (count[c] ? right[c][j] / count[c] : null)),
    );
  }

  /** Applies the current point's thresholds to the scored images (the engine's applyThresholds). */
  recompute(): void {
    const { init, n, used, M, groupOf, conf, pred } = this;
    if (!init || !this.curve.p.length) return;
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (this.scoredMask[i] === 1) idx.push(i);
    const m = idx.length;
    const exitOf = new Int32Array(n).fill(-1);
    // Labels only when every scored image has one (accuracy over a partly labelled folder would
    // count unlabelled images as wrong); otherwise accuracy is shown per labelled class below.
    const allLabelled = m > 0 && idx.every((i) => groupOf[i] >= 0);
    const s: ExitScores = {
      conf: Array.from(used, (j) => Float32Array.from(idx, (i) => conf[j][i])),
      pred: Array.from(used, (j) => Int32Array.from(idx, (i) => pred[j][i])),
      // Regression: the mean of -|error| (applyThresholds' quality), so accuracy = -MAE.
      ...(allLabelled
        ? this.reg
          ? { quality: Array.from(used, (j) => Float32Array.from(idx, (i) => this.quality(j, i))) }
          : { labels: Int32Array.from(idx, (i) => init.labels[i]) }
        : {}),
    };
    let res: ThresholdResult | null = null;
    if (m > 0) {
      res = applyThresholds(s, this.thresholdsOf(this.point), this.cost());
      idx.forEach((i, r) => (exitOf[i] = res!.exitOf[r]));
    }
    this.dyn = { res, exitOf };
    // Per class: where its images exit and how many the taken exit gets right.
    const C = this.groupNames.length;
    const counts = Array.from({ length: C }, () => new Array<number>(M).fill(0));
    const right = new Array<number>(C).fill(0);
    const total = new Array<number>(C).fill(0);
    for (const i of idx) {
      const y = groupOf[i];
      if (y < 0) continue;
      const e = exitOf[i];
      counts[y][e]++;
      total[y]++;
      right[y] += this.quality(used[e], i);
    }
    this.classStats = this.groupNames.map((name, c) => ({
      name,
      n: total[c],
      exitCounts: counts[c],
      accuracy: total[c] ? right[c] / total[c] : null,
    }));
  }
}

/** What a key does in the grid: move the active cell (row, exit column 0..K), select a row, or nothing. */
export type GridMove = { kind: 'active'; row: number; col: number } | { kind: 'select'; row: number } | null;

/**
 * The grid's keyboard: arrows move the active cell, PageUp/PageDown by `page` rows, Home/End to
 * the first / last image, Enter or Space select the active row. `active` -1: no active cell yet.
 * The row and column returned are not clamped: clampCell does that.
 */
export function gridMove(key: string, active: number, col: number, page: number, n: number): GridMove {
  const a = active;
  switch (key) {
    case 'ArrowDown':
      return { kind: 'active', row: a + 1, col };
    case 'ArrowUp':
      return { kind: 'active', row: Math.max(0, a - 1), col };
    case 'ArrowRight':
      return { kind: 'active', row: Math.max(0, a), col: col + 1 };
    case 'ArrowLeft':
      return { kind: 'active', row: Math.max(0, a), col: col - 1 };
    case 'PageDown':
      return { kind: 'active', row: a + page, col };
    case 'PageUp':
      return { kind: 'active', row: a - page, col };
    case 'Home':
      return { kind: 'active', row: 0, col };
    case 'End':
      return { kind: 'active', row: n - 1, col };
    case 'Enter':
    case ' ':
      return { kind: 'select', row: Math.max(0, a) };
    default:
      return null;
  }
}

/** An active cell inside the grid: rows 0..n-1, columns 0..K (0: the image, j + 1: exit j). */
export function clampCell(row: number, col: number, n: number, K: number): { row: number; col: number } {
  return { row: Math.max(0, Math.min(n - 1, row)), col: Math.max(0, Math.min(K, col)) };
}
