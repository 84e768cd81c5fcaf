// AdamW (decoupled weight decay, Loshchilov & Hutter; PyTorch's torch.optim.AdamW semantics) on
// host Float32Arrays. The trainable tensors of parameter-efficient tuning are small (well under
// 1% of the weights), so the update runs in TypeScript between onnxruntime steps.

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

export interface AdamWState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  state: AdamWState = { step: 0, m: new Map(), v: new Map() };

  /** `decay(name)` says whether a tensor gets weight decay (e.g. not biases or diagonals). */
  constructor(
    opts: AdamWOptions,
    private readonly decay: (name: string) => boolean = () => true,
  ) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /**
   * One step at learning rate `lr`, in place on `params`. Every tensor must have a gradient.
   * All or nothing: when a gradient, a moment or an updated parameter would not be finite, it
   * returns what (e.g. "gradient of 'w' [12] = NaN") and changes neither parameters nor moments
   * nor the step count, so the optimizer state (and any checkpoint of it) stays usable.
   * Otherwise it returns null. The check costs one read of the gradients and parameters when
   * they are within the bounds that make a finite update certain (safeBounds), and a dry run of
   * the update otherwise (steps near overflow only).
   */
  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): string | null {
    const bad = this.safeBounds(params, grads, lr) ? null : this.dryRun(params, grads, lr);
    if (bad) return bad;
    this.apply(params, grads, lr);
    return null;
  }

  /**
   * True when the step is certainly finite: every gradient |g| <= 1e18 (so v, a weighted mean
   * of g², stays below 1e36) and |p| * |1 - lr * wd| + |update| stays far below float32's
   * maximum. Adam's update is bounded without computing it: with m and v the weighted sums of
   * the same gradients, Cauchy-Schwarz gives |m| / sqrt(v) <= (1 - b1) / sqrt((1 - b2) *
   * (1 - b1² / b2)) (7.3 with the defaults), times the bias corrections sqrt(bc2) / bc1. This
   * holds for moments this class made from zero (a checkpoint's are checked when it is read).
   */
  private safeBounds(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): boolean {
    const b1 = this.beta1;
    const b2 = this.beta2;
    if (!Number.isFinite(lr) || !(b1 * b1 < b2) || b2 >= 1 || !(this.eps > 0)) return false;
    const t = this.state.step + 1;
    const ratio = ((1 - b1) / Math.sqrt((1 - b2) * (1 - (b1 * b1) / b2))) * 1.01;
    const maxUpdate = (Math.abs(lr) * ratio * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
    let maxP = 0;
    for (const [name, p] of params) {
      const g = this.gradOf(name, p, grads);
      for (let i = 0; i < p.length; i++) {
        if (!(Math.abs(g[i]) <= 1e18)) return false;
        const a = Math.abs(p[i]);
        // Written so that a NaN parameter makes maxP NaN, and the bound fail.
        if (!(a <= maxP)) maxP = a;
      }
    }
    const wd = Math.max(1, Math.abs(1 - lr * this.weightDecay));
    return maxP * wd + maxUpdate <= 1e37;
  }

  private gradOf(name: string, p: Float32Array, grads: Map<string, Float32Array>): Float32Array {
    const g = grads.get(name);
    if (!g) throw new Error(`AdamW: no gradient for '${name}'`);
    if (g.length !== p.length)
      throw new Error(`AdamW: gradient of '${name}' has ${g.length} values, parameter ${p.length}`);
    return g;
  }

  /** The update computed without storing it: what would not be finite, or null. */
  private dryRun(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): string | null {
    const s = this.state;
    const t = s.step + 1;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    const b1 = this.beta1;
    const b2 = this.beta2;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    const F32 = 3.4028234663852886e38;
    for (const [name, p] of params) {
      const g = this.gradOf(name, p, grads);
      const m = s.m.get(name);
      const v = s.v.get(name);
      const wd = this.decay(name) ? 1 - lr * this.weightDecay : 1;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        // Float32 storage: a double beyond float32's range would be stored as Infinity.
        if (!(Math.abs(gi) <= F32)) return `gradient of '${name}' [${i}] = ${gi}`;
        const mi = b1 * (m ? m[i] : 0) + (1 - b1) * gi;
        const vi = b2 * (v ? v[i] : 0) + (1 - b2) * gi * gi;
        const pi = p[i] * wd - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + this.eps);
        if (!(Math.abs(mi) <= F32 && vi <= F32)) return `AdamW moment of '${name}' [${i}] (gradient ${gi})`;
        if (!(Math.abs(pi) <= F32)) return `update of '${name}' [${i}] = ${pi}`;
      }
    }
    return null;
  }

  private apply(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    const s = this.state;
    s.step++;
    const bc1 = 1 - this.beta1 ** s.step;
    const bc2 = 1 - this.beta2 ** s.step;
    const b1 = this.beta1;
    const b2 = this.beta2;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of params) {
      const g = grads.get(name)!;
      let m = s.m.get(name);
      let v = s.v.get(name);
      if (!m || !v) {
        m = new Float32Array(p.length);
        v = new Float32Array(p.length);
        s.m.set(name, m);
        s.v.set(name, v);
      }
      const wd = this.decay(name) ? 1 - lr * this.weightDecay : 1;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] = p[i] * wd - (stepSize * m[i]) / (Math.sqrt(v[i]) / sqrtBc2 + this.eps);
      }
    }
  }
}

/**
 * Linear warm-up from 0 to `lr` over `warmupSteps`, then half-cosine down to `minLr` at
 * `totalSteps` (timm / DyT's lr_sched). `step` counts from 0.
 */
export function warmupCosine(step: number, totalSteps: number, warmupSteps: number, lr: number, minLr: number): number {
  if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  const t = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  return minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
}
