// Decode-once image cache and batch assembly for training and evaluation.
//
// Every file is decoded once (prepare) and kept as 8-bit pixels; batches (batch) are then
// assembled synchronously: optional random-resized-crop + horizontal flip, Pillow-exact
// resize, normalisation straight into the [B, C, H, W] float32 batch buffer.
//
// Why 8-bit and not float32: floats are 4x the memory. 5,000 images at 224x224x3 cached as
// float32 would be 3 GB; as uint8 they are 750 MB, and the normalisation at batch time is a
// table lookup per value, negligible next to a ViT step.
//
// Memory bound (documented contract, see ImageCache.estimateBytes):
//  - no augmentation (or flip only): at most S*S*C bytes per image (S = pre.imageSize). Images
//    smaller than that (CIFAR 32x32 to 224) keep their decoded source instead and are resized
//    at batch time, so 50,000 CIFAR images take 150 MB rather than 7.5 GB. 5,000 at 224 RGB:
//    <= 750 MB; at 384 RGB: <= 2.2 GB.
//  - random-resized-crop: the decoded picture scaled so its short side is at most k*S (k in
//    [1, 2], and the long side at most twice that), i.e. at most 2*(k*S)^2*C bytes, about
//    (k*S)^2*C*4/3 for a 4:3 photo. k is chosen at the first prepare() so that the estimate
//    for that many images stays within maxCacheBytes (default 2 GiB), but never below 1: a
//    larger dataset can exceed the budget, which the caller can check up front with
//    estimateBytes.

import { UserError } from '../tensor';
import { SharpUnavailable } from './sharp';
import {
  decodeForPreprocess,
  finishPreprocess,
  ImageError,
  loadSourceImage8,
  normalizationTables,
  type Preprocess,
  type ResizePlan,
  validatePreprocess,
  writeNormalized,
} from './image';
import { type Filter, type Image8, resizePil, type Window } from './resample';
import type { Sample, SkippedFile } from './folder';

export interface RandomResizedCropOptions {
  /** Range of the crop area as a fraction of the image area; default [0.08, 1] (torchvision). */
  scale?: [number, number];
  /** Range of the crop aspect ratio (width / height), sampled log-uniformly; default [3/4, 4/3]. */
  ratio?: [number, number];
}

export interface AugmentOptions {
  /** torchvision RandomResizedCrop(S, scale, ratio, interpolation = pre.interpolation). */
  randomResizedCrop?: RandomResizedCropOptions;
  /** torchvision RandomHorizontalFlip(p = 0.5), applied after the crop. */
  hflip?: boolean;
}

export interface LoadOptions {
  pre: Preprocess;
  /** Training augmentation; absent (or all off) gives loadImageTensor's exact eval pixels. */
  augment?: AugmentOptions;
  /** Decodes in flight during prepare(); default 4 (libuv's default thread pool size). */
  concurrency?: number;
  /** Target size of a random-resized-crop cache in bytes; default 2 GiB. See the file comment. */
  maxCacheBytes?: number;
  /** Fixes k (cached short side = k * imageSize, from 1 to 4) instead of deriving it from maxCacheBytes. */
  sourceScale?: number;
}

export const DEFAULT_RRC_SCALE: [number, number] = [0.08, 1];
export const DEFAULT_RRC_RATIO: [number, number] = [3 / 4, 4 / 3];
export const DEFAULT_MAX_CACHE_BYTES = 2 * 1024 ** 3;

export interface Batch {
  /** [B, C, H, W] normalised pixels. */
  images: Float32Array;
  /** [B] class indices (int64, as the cross-entropy input expects). */
  labels: BigInt64Array;
}

export interface PrepareResult {
  /** The samples whose files decoded, in input order. */
  ok: Sample[];
  /** Files that failed to decode (each once, in input order), with a plain reason. */
  failed: SkippedFile[];
}

/** Python's round() (half to even): torchvision's int(round(...)) in RandomResizedCrop. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's RandomResizedCrop.get_params for a width x height image, drawing from `rng`
 * in the same order (area, log-ratio, then top, left; up to 10 tries, then the central
 * fallback). The window always lies inside the image and is at least 1x1.
 */
export function randomResizedCropParams(
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  rng: () => number,
): Window {
  const area = width * height;
  const logR0 = Math.log(ratio[0]);
  const logR1 = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + rng() * (scale[1] - scale[0]));
    const aspect = Math.exp(logR0 + rng() * (logR1 - logR0));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rng() * (height - h + 1));
      const left = Math.floor(rng() * (width - w + 1));
      return { left, top, width: w, height: h };
    }
  }
  // Central crop at the nearest allowed aspect ratio.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1]))
    h = Math.max(1, Math.min(height, roundHalfEven(w / Math.min(ratio[0], ratio[1]))));
  else if (inRatio > Math.max(ratio[0], ratio[1]))
    w = Math.max(1, Math.min(width, roundHalfEven(h * Math.max(ratio[0], ratio[1]))));
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** Copies the `win` part of `src` (PIL's Image.crop for a box inside the image). */
function crop(src: Image8, win: Window): Image8 {
  const C = src.channels;
  const rowLen = win.width * C;
  const out = new Uint8Array(win.height * rowLen);
  for (let y = 0; y < win.height; y++) {
    const from = ((win.top + y) * src.width + win.left) * C;
    out.set(src.data.subarray(from, from + rowLen), y * rowLen);
  }
  return { data: out, width: win.width, height: win.height, channels: C };
}

function cleanMessage(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();
}

function checkRange(name: string, v: unknown, lo: number, hi: number): [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new UserError(`random resized crop ${name} must be two numbers, got ${JSON.stringify(v)}`);
  }
  const [a, b] = v as [number, number];
  if (!(a > lo && a <= b && b <= hi))
    throw new UserError(`random resized crop ${name} must satisfy ${lo} < min <= max <= ${hi}, got [${a}, ${b}]`);
  return [a, b];
}

/** A cached image: either final [S, S, C] pixels (plan null) or a source plus its last resize. */
interface Entry {
  img: Image8;
  plan: ResizePlan | null;
}

/**
 * Decodes each file once and assembles batches from memory. Use one cache for training (with
 * `augment`) and another without it for validation/test: eval batches must not come from the
 * downscaled augmentation sources. prepare() calls are serialised; batch() is synchronous and
 * only reads the cache, so it can be called any number of times after prepare().
 */
export class ImageCache {
  readonly pre: Preprocess;
  /** True when batch() applies random crops and/or flips (and so needs an rng). */
  readonly augmenting: boolean;
  private readonly rrc: { scale: [number, number]; ratio: [number, number] } | null;
  private readonly hflip: boolean;
  private readonly concurrency: number;
  private readonly maxCacheBytes: number;
  private readonly tables: Float32Array[];
  private readonly filter: Filter;
  private readonly entries = new Map<string, Entry>();
  private readonly failures = new Map<string, string>();
  private sourceShort: number | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: LoadOptions) {
    validatePreprocess(opts.pre);
    this.pre = { ...opts.pre, mean: opts.pre.mean.slice(), std: opts.pre.std.slice() };
    const a = opts.augment ?? {};
    this.rrc = a.randomResizedCrop
      ? {
          scale: checkRange('scale', a.randomResizedCrop.scale ?? DEFAULT_RRC_SCALE, 0, 1),
          ratio: checkRange('ratio', a.randomResizedCrop.ratio ?? DEFAULT_RRC_RATIO, 0, Infinity),
        }
      : null;
    this.hflip = a.hflip === true;
    this.augmenting = this.rrc !== null || this.hflip;
    this.concurrency = opts.concurrency ?? 4;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1)
      throw new UserError(`concurrency must be a positive integer, got ${this.concurrency}`);
    this.maxCacheBytes = opts.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES;
    if (!(this.maxCacheBytes > 0)) throw new UserError(`maxCacheBytes must be positive, got ${this.maxCacheBytes}`);
    if (opts.sourceScale !== undefined) {
      if (!(opts.sourceScale >= 1 && opts.sourceScale <= 4))
        throw new UserError(`sourceScale must be between 1 and 4, got ${opts.sourceScale}`);
      this.sourceShort = Math.floor(opts.sourceScale * this.pre.imageSize);
    }
    this.tables = normalizationTables(this.pre);
    this.filter = this.pre.interpolation ?? 'bilinear';
  }

  /**
   * The short-side factor k a random-resized-crop cache of `count` images would use: the
   * largest k in [1, 2] whose estimate (k*S)^2 * C * 4/3 bytes per image fits `maxBytes`.
   */
  static sourceScaleFor(count: number, pre: Preprocess, maxBytes = DEFAULT_MAX_CACHE_BYTES): number {
    const perAtK1 = pre.imageSize * pre.imageSize * pre.channels * (4 / 3);
    const k = Math.sqrt(maxBytes / (Math.max(1, count) * perAtK1));
    return Math.min(2, Math.max(1, k));
  }

  /**
   * Upper bound (eval / flip-only) or 4:3-photo estimate (random-resized-crop) of the bytes a
   * cache of `count` images will hold, for deciding up front whether a dataset fits in memory.
   */
  static estimateBytes(count: number, opts: LoadOptions): number {
    const { imageSize: s, channels: c } = opts.pre;
    if (!opts.augment?.randomResizedCrop) return count * s * s * c;
    const k = opts.sourceScale ?? ImageCache.sourceScaleFor(count, opts.pre, opts.maxCacheBytes);
    const short = Math.floor(k * s);
    return Math.ceil(count * short * short * c * (4 / 3));
  }

  /** Number of cached images. */
  get size(): number {
    return this.entries.size;
  }

  /** Bytes of pixel data held. */
  get bytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.img.data.byteLength;
    return n;
  }

  /** Size of the cached pixels of `file` (the source, for crops or small images), if cached. */
  cachedSize(file: string): { width: number; height: number; channels: number } | undefined {
    const e = this.entries.get(file);
    return e && { width: e.img.width, height: e.img.height, channels: e.img.channels };
  }

  has(file: string): boolean {
    return this.entries.has(file);
  }

  /** Drops every cached image and remembered failure. */
  clear(): void {
    this.entries.clear();
    this.failures.clear();
  }

  /**
   * Decodes the files of `samples` not cached yet, `concurrency` at a time. A file that fails
   * is remembered (not retried) and reported in `failed`; it never stops the others.
   * onProgress(done, total) counts files that needed decoding in this call.
   */
  prepare(samples: readonly Sample[], onProgress?: (done: number, total: number) => void): Promise<PrepareResult> {
    const run = this.queue.then(() => this.prepareNow(samples, onProgress));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async prepareNow(
    samples: readonly Sample[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<PrepareResult> {
    const todo: string[] = [];
    const seen = new Set<string>();
    for (const s of samples) {
      if (seen.has(s.file)) continue;
      seen.add(s.file);
      if (!this.entries.has(s.file) && !this.failures.has(s.file)) todo.push(s.file);
    }
    if (this.rrc && this.sourceShort === null) {
      // Fixed once, from the first (normally the whole training) set, so every later image of
      // this cache is stored at the same scale and runs are reproducible.
      this.sourceShort = Math.floor(
        ImageCache.sourceScaleFor(todo.length, this.pre, this.maxCacheBytes) * this.pre.imageSize,
      );
    }
    let next = 0;
    let done = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const file = todo[next++];
        try {
          this.entries.set(file, await this.decode(file));
        } catch (e) {
          if (e instanceof SharpUnavailable) throw e; // no file can be decoded: say so once
          // Anything, not only ImageError: one odd file must not abort the preparation.
          this.failures.set(file, e instanceof ImageError ? e.reason : cleanMessage(e));
        }
        done++;
        onProgress?.(done, todo.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, todo.length) }, () => worker()));

    const ok: Sample[] = [];
    const failed: SkippedFile[] = [];
    const reported = new Set<string>();
    for (const s of samples) {
      if (this.entries.has(s.file)) {
        ok.push(s);
      } else if (!reported.has(s.file)) {
        reported.add(s.file);
        failed.push({ file: s.file, reason: this.failures.get(s.file) ?? 'not decoded' });
      }
    }
    return { ok, failed };
  }

  private async decode(file: string): Promise<Entry> {
    const p = this.pre;
    if (this.rrc) {
      const short = this.sourceShort ?? p.imageSize;
      return { img: await loadSourceImage8(file, p.channels, short, 2 * short, this.filter), plan: null };
    }
    const d = await decodeForPreprocess(file, p);
    // Keep whichever is smaller: a small source (resized again at every batch, cheaply) or
    // the final pixels. Both give loadImageTensor's exact values.
    if (d.image.data.length < p.imageSize * p.imageSize * p.channels) return { img: d.image, plan: d.plan };
    return { img: finishPreprocess(d), plan: null };
  }

  /**
   * Assembles a batch from cached images, in the order of `samples`. With augmentation, `rng`
   * is required (use stepRng(seed, epoch, step) so a resumed run redraws the same batch);
   * draws per sample, in order: the crop parameters, then one draw for the flip (< 0.5 flips).
   * Without augmentation an rng is ignored. Throws if a sample was not prepared or failed.
   */
  batch(samples: readonly Sample[], rng?: () => number): Batch {
    if (this.augmenting && !rng)
      throw new Error('ImageCache.batch: augmentation needs an rng, e.g. stepRng(seed, epoch, step)');
    const s = this.pre.imageSize;
    const per = this.pre.channels * s * s;
    const images = new Float32Array(samples.length * per);
    const labels = new BigInt64Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const { file, label } = samples[i];
      const e = this.entries.get(file);
      if (!e) {
        const why = this.failures.get(file);
        throw new Error(
          `ImageCache.batch: ${file} ${why !== undefined ? `failed to decode (${why})` : 'was not prepared'}`,
        );
      }
      let img: Image8;
      if (this.rrc && rng) {
        const win = randomResizedCropParams(e.img.width, e.img.height, this.rrc.scale, this.rrc.ratio, rng);
        img = resizePil(crop(e.img, win), s, s, this.filter);
      } else if (e.plan) {
        img = resizePil(e.img, e.plan.width, e.plan.height, e.plan.filter, e.plan.window);
      } else {
        img = e.img;
      }
      const flip = this.hflip && rng !== undefined && rng() < 0.5;
      writeNormalized(img, this.tables, images, i * per, flip);
      labels[i] = BigInt(label);
    }
    return { images, labels };
  }
}
