// Procedural image datasets for the demo (`npm run demo`) and for pretraining the committed
// tiny backbone (scripts/pretrain-tiny.ts): shapes and textures on noisy backgrounds.
//
// Why procedural: the demo must run on a fresh clone in a few minutes with nothing downloaded,
// and it has to show what MET is for: easy images answered by early exits, hard ones by deep
// exits. So every image is drawn at a difficulty `level` in [0, 1]:
//   easy (level <= 0.3): large, centred, high contrast, little noise, nothing else in view;
//   hard (level >= 0.7): small, anywhere, low contrast, heavy noise, a background gradient and
//                        small distractor strokes.
// Two disjoint class sets share the renderer: DEMO_CLASSES (the fine-tuning task) and
// PRETRAIN_CLASSES (the backbone's pretraining task); see the outline x fill note below.
//
// Determinism: an image is a pure function of (seed, class name, index): its random stream is
// mulberry32(hashInts(seed, hashString(class), index)), so adding a class or more images never
// changes existing ones. No Math.random; V8 computes Math.sin/cos/log with its own fdlibm port
// rather than the platform's libm, so Node draws the same pixels on every OS.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { sharpLib } from '../data/sharp';
import { hashInts, hashString, mulberry32 } from '../data/random';
import { replaceDirAtomic, tempDirBeside } from '../io/atomic';

/**
 * Every class is an outline filled in one way. The demo's eight classes use outlines that
 * pretraining never draws (disc, square, triangle, cross); pretraining draws other outlines with
 * every fill, so the backbone learns fills (hollow, stripe orientation, checks) and outline cues
 * (corners, curvature, arms) as separate, reusable features: the demo task is new to it, the
 * ingredients are not. Measured: after the same 1,500 pretraining steps, a linear probe on the
 * demo task reached 69% on these features against 50% on those of a 13-class plain-shapes task.
 */
type Outline =
  | 'disc'
  | 'box'
  | 'triangle'
  | 'cross'
  | 'ellipse'
  | 'hexagon'
  | 'pentagon'
  | 'semicircle'
  | 'star'
  | 'arrow'
  | 'lshape'
  | 'tshape'
  | 'bar'
  | 'crescent';
type Fill = 'solid' | 'hollow' | 'hstripes' | 'vstripes' | 'diagstripes' | 'checker' | 'dots' | 'grid';

/** The fine-tuning task of the demo: name -> [outline, fill]. */
const DEMO_DEFS: Record<string, readonly [Outline, Fill]> = {
  checker: ['box', 'checker'],
  circle: ['disc', 'solid'],
  cross: ['cross', 'solid'],
  hstripes: ['box', 'hstripes'],
  ring: ['disc', 'hollow'],
  square: ['box', 'solid'],
  triangle: ['triangle', 'solid'],
  vstripes: ['box', 'vstripes'],
};

const FILLS: Fill[] = ['solid', 'hollow', 'hstripes', 'vstripes', 'diagstripes', 'checker', 'dots', 'grid'];
/** Pretraining: compact outlines take every fill, thin ones are solid only (stripes would not show). */
const PRETRAIN_DEFS: Record<string, readonly [Outline, Fill]> = Object.fromEntries([
  ...(['ellipse', 'hexagon', 'pentagon', 'semicircle', 'star'] as Outline[]).flatMap((o) =>
    FILLS.map((f) => [f === 'solid' ? o : `${o}-${f}`, [o, f]] as const),
  ),
  ...(['arrow', 'lshape', 'tshape', 'bar', 'crescent'] as Outline[]).map((o) => [o, [o, 'solid']] as const),
]);

export const DEMO_CLASSES: readonly string[] = Object.keys(DEMO_DEFS);
export const PRETRAIN_CLASSES: readonly string[] = Object.keys(PRETRAIN_DEFS);

/** Bumped whenever a change alters any pixel, so cached folders are regenerated. */
export const GENERATOR_VERSION = 2;

type Pt = [number, number];

interface ClassDef {
  /** Coverage test in the shape's unit frame (radius about 1, v pointing up). */
  inside(u: number, v: number): boolean;
  /** For textures: which of the two fill colours a point inside takes (true = foreground). */
  pattern?(u: number, v: number): boolean;
  /** Rotation range in radians: uniform in [-rot, rot]. */
  rot: number;
}

const FULL = Math.PI;
const SMALL = (20 * Math.PI) / 180;

function polygon(pts: Pt[]): (u: number, v: number) => boolean {
  // Even-odd rule, fine for the simple (possibly non-convex) outlines used here. Flat arrays and
  // a bounding-circle test first: this runs 16 times per pixel.
  const n = pts.length;
  const xs = Float64Array.from(pts, (p) => p[0]);
  const ys = Float64Array.from(pts, (p) => p[1]);
  const r2 = Math.max(...pts.map(([x, y]) => x * x + y * y));
  return (u, v) => {
    if (u * u + v * v > r2) return false;
    let c = false;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const yi = ys[i];
      const yj = ys[j];
      if (yi > v !== yj > v && u < ((xs[j] - xs[i]) * (v - yi)) / (yj - yi) + xs[i]) c = !c;
    }
    return c;
  };
}

function starPts(n: number, outer: number, inner: number): Pt[] {
  const pts: Pt[] = [];
  for (let k = 0; k < 2 * n; k++) {
    const a = Math.PI / 2 + (k * Math.PI) / n;
    const r = k % 2 ? inner : outer;
    pts.push([r * Math.cos(a), r * Math.sin(a)]);
  }
  return pts;
}

const box = (u: number, v: number, h = 1) => Math.abs(u) <= h && Math.abs(v) <= h;
/** Stripe index parity with `n` periods across the unit box [-1, 1]. */
const band = (x: number, n: number) => (Math.floor((x + 1) * n) & 1) === 0;
/** Distance to the nearest cell centre of a lattice with `n` cells across [-1, 1], per axis. */
const cell = (x: number, n: number) => Math.abs(((((x + 1) * n) / 2) % 1) - 0.5);

const OUTLINES: Record<Outline, (u: number, v: number) => boolean> = {
  disc: (u, v) => u * u + v * v <= 1,
  box: (u, v) => box(u, v, 0.85),
  triangle: (u, v) => {
    const s = 1.15;
    u /= s;
    v /= s;
    return v >= -0.5 && v <= 1 - Math.sqrt(3) * Math.abs(u);
  },
  cross: (u, v) => (Math.abs(u) <= 0.3 && Math.abs(v) <= 1) || (Math.abs(v) <= 0.3 && Math.abs(u) <= 1),
  ellipse: (u, v) => u * u + (v * v) / 0.36 <= 1,
  hexagon: (u, v) => Math.abs(v) <= Math.sqrt(3) / 2 && Math.abs(u) <= 1 - Math.abs(v) / Math.sqrt(3),
  pentagon: polygon(
    Array.from({ length: 5 }, (_, k): Pt => [
      Math.cos(Math.PI / 2 + (2 * Math.PI * k) / 5),
      Math.sin(Math.PI / 2 + (2 * Math.PI * k) / 5),
    ]),
  ),
  semicircle: (u, v) => u * u + (v + 0.4) ** 2 <= 1.2 * 1.2 && v >= -0.4,
  star: polygon(starPts(5, 1.1, 0.5)),
  arrow: polygon([
    [-1, -0.25],
    [0.15, -0.25],
    [0.15, -0.65],
    [1, 0],
    [0.15, 0.65],
    [0.15, 0.25],
    [-1, 0.25],
  ]),
  lshape: polygon([
    [-0.7, 1],
    [-0.2, 1],
    [-0.2, -0.5],
    [0.8, -0.5],
    [0.8, -1],
    [-0.7, -1],
  ]),
  tshape: polygon([
    [-1, 1],
    [1, 1],
    [1, 0.55],
    [0.25, 0.55],
    [0.25, -1],
    [-0.25, -1],
    [-0.25, 0.55],
    [-1, 0.55],
  ]),
  bar: (u, v) => Math.abs(u) <= 1.1 && Math.abs(v) <= 0.25,
  crescent: (u, v) => u * u + v * v <= 1 && (u - 0.45) ** 2 + v * v > 0.8 * 0.8,
};

/** Inner scale of a hollow outline: the hole is the outline shrunk about its centre. */
const HOLE = 0.55;

const PATTERNS: Partial<Record<Fill, (u: number, v: number) => boolean>> = {
  hstripes: (_u, v) => band(v, 3),
  vstripes: (u) => band(u, 3),
  diagstripes: (u, v) => band((u + v) / Math.SQRT2, 3),
  checker: (u, v) => band(u, 2) === band(v, 2),
  dots: (u, v) => cell(u, 3) ** 2 + cell(v, 3) ** 2 < 0.3 * 0.3,
  grid: (u, v) => cell(u, 3) > 0.33 || cell(v, 3) > 0.33,
};

function classDef(outline: Outline, fill: Fill): ClassDef {
  const o = OUTLINES[outline];
  return {
    inside: fill === 'hollow' ? (u, v) => o(u, v) && !o(u / HOLE, v / HOLE) : o,
    pattern: PATTERNS[fill],
    // Oriented fills keep their orientation (±20°): turned by 90° one stripe class would be another.
    rot: fill === 'hstripes' || fill === 'vstripes' || fill === 'diagstripes' ? SMALL : FULL,
  };
}

const CLASSES: Record<string, ClassDef> = Object.fromEntries(
  [...Object.entries(DEMO_DEFS), ...Object.entries(PRETRAIN_DEFS)].map(([name, [o, f]]) => [name, classDef(o, f)]),
);

export function isKnownClass(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(CLASSES, name);
}

export interface SampleInfo {
  cls: string;
  index: number;
  hard: boolean;
  /** Difficulty in [0, 1]; easy samples are <= 0.3, hard ones >= 0.7. */
  level: number;
  /** Shape radius in pixels. */
  radius: number;
  /** Luma difference between the shape's colour and the background's, in [0, 1]. */
  contrast: number;
  /** Standard deviation of the pixel noise, in [0, 1] units. */
  noise: number;
  distractors: number;
}

export interface RenderedSample {
  /** size x size x 3 interleaved RGB, 8-bit. */
  pixels: Uint8Array;
  /** Per-pixel coverage of the main shape in [0, 1] (what the test measures contrast with). */
  mask: Float32Array;
  info: SampleInfo;
}

export interface RenderOptions {
  /** Image side in pixels; default 32. */
  size?: number;
  /** Share of hard samples; default 0.5. */
  hardFraction?: number;
}

const luma = (c: readonly number[]) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
const lerp = (a: number, b: number, t: number) => a + (b - a) * t;
const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

/** Supersampling per pixel side: 4x4 coverage samples keep small, rotated shapes anti-aliased. */
const SS = 4;

/** Renders one image of class `cls`: a pure function of (cls, seed, index, options). */
export function renderSample(cls: string, seed: number, index: number, opts: RenderOptions = {}): RenderedSample {
  const def = CLASSES[cls];
  if (!def || !isKnownClass(cls)) throw new Error(`unknown shape class '${cls}'`);
  const S = opts.size ?? 32;
  const hardFraction = opts.hardFraction ?? 0.5;
  const rng = mulberry32(hashInts(seed, hashString(cls), index));
  const uni = (a: number, b: number) => a + (b - a) * rng();
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());

  const hard = rng() < hardFraction;
  const level = hard ? uni(0.7, 1) : uni(0, 0.3);
  // Sizes are in units of a 32-pixel image, scaled to S.
  const k = S / 32;
  const radius = k * (lerp(13, 7, level) + uni(-1, 1));
  const maxOff = Math.max(0, lerp(1.5 * k, S / 2 - radius - 1, level));
  const cx = S / 2 + uni(-maxOff, maxOff);
  const cy = S / 2 + uni(-maxOff, maxOff);
  const angle = uni(-def.rot, def.rot);
  const noise = lerp(0.02, 0.13, level) * uni(0.85, 1.15);
  const targetContrast = lerp(0.6, 0.18, level) * uni(0.8, 1.2);

  // Colours: a random background, then a random foreground whose luma differs by about the
  // target contrast (rejection sampling; deterministic since it only consumes rng draws).
  const bg = [uni(0.1, 0.9), uni(0.1, 0.9), uni(0.1, 0.9)];
  let fg = bg.slice();
  let best = Infinity;
  for (let t = 0; t < 200; t++) {
    const c = [rng(), rng(), rng()];
    const err = Math.abs(Math.abs(luma(c) - luma(bg)) - targetContrast);
    if (err < best) {
      best = err;
      fg = c;
      if (err < 0.02) break;
    }
  }
  // Textures alternate the foreground with a colour a quarter of the way from it to the background.
  const fg2 = fg.map((x, i) => lerp(x, bg[i], 0.75));
  const contrast = Math.abs(luma(fg) - luma(bg));

  // Background: base colour + a linear gradient (stronger when hard).
  const gAmp = lerp(0.03, 0.18, level);
  const gDir = uni(0, 2 * Math.PI);
  const gx = Math.cos(gDir) * gAmp;
  const gy = Math.sin(gDir) * gAmp;
  const img = new Float32Array(S * S * 3);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const t = ((x + 0.5) / S - 0.5) * gx + ((y + 0.5) / S - 0.5) * gy;
      for (let c = 0; c < 3; c++) img[(y * S + x) * 3 + c] = bg[c] + t;
    }

  // Distractors on hard images: short strokes and specks, drawn before the shape (behind it).
  const distractors = level > 0.5 ? 1 + Math.floor(rng() * 3) : 0;
  for (let d = 0; d < distractors; d++) {
    const col = [rng(), rng(), rng()];
    const x0 = uni(0, S);
    const y0 = uni(0, S);
    const speck = rng() < 0.4;
    const len = speck ? 0 : k * uni(4, 9);
    const a = uni(0, 2 * Math.PI);
    const x1 = x0 + Math.cos(a) * len;
    const y1 = y0 + Math.sin(a) * len;
    const w = k * (speck ? uni(1, 1.8) : uni(0.5, 0.9));
    const alpha = uni(0.4, 0.8);
    paint(img, S, (px, py) => distToSegment(px, py, x0, y0, x1, y1) <= w, col, alpha);
  }

  // The shape itself, with coverage from SS x SS samples per pixel.
  const ca = Math.cos(angle);
  const sa = Math.sin(angle);
  const mask = new Float32Array(S * S);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      let cov = 0;
      let covFg = 0;
      for (let sy = 0; sy < SS; sy++)
        for (let sx = 0; sx < SS; sx++) {
          const px = x + (sx + 0.5) / SS - cx;
          const py = cy - (y + (sy + 0.5) / SS); // v points up
          const u = (ca * px + sa * py) / radius;
          const v = (-sa * px + ca * py) / radius;
          if (!def.inside(u, v)) continue;
          cov++;
          if (!def.pattern || def.pattern(u, v)) covFg++;
        }
      if (!cov) continue;
      const n = SS * SS;
      mask[y * S + x] = cov / n;
      const o = (y * S + x) * 3;
      for (let c = 0; c < 3; c++)
        img[o + c] = img[o + c] * (1 - cov / n) + (fg[c] * covFg + fg2[c] * (cov - covFg)) / n;
    }

  // Sensor-like noise last, so it covers shape and background alike.
  const pixels = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S; i++) {
    const lumaNoise = gauss() * noise * 0.8;
    for (let c = 0; c < 3; c++) {
      const v = img[i * 3 + c] + lumaNoise + gauss() * noise * 0.6;
      pixels[i * 3 + c] = Math.round(clamp01(v) * 255);
    }
  }
  return { pixels, mask, info: { cls, index, hard, level, radius, contrast, noise, distractors } };
}

function distToSegment(px: number, py: number, x0: number, y0: number, x1: number, y1: number): number {
  const dx = x1 - x0;
  const dy = y1 - y0;
  const l2 = dx * dx + dy * dy;
  const t = l2 ? clamp01(((px - x0) * dx + (py - y0) * dy) / l2) : 0;
  return Math.hypot(px - (x0 + t * dx), py - (y0 + t * dy));
}

/** Blends `col` over the pixels whose centre satisfies `inside` (distractors need no anti-aliasing). */
function paint(
  img: Float32Array,
  S: number,
  inside: (x: number, y: number) => boolean,
  col: number[],
  alpha: number,
): void {
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      if (!inside(x + 0.5, y + 0.5)) continue;
      const o = (y * S + x) * 3;
      for (let c = 0; c < 3; c++) img[o + c] = img[o + c] * (1 - alpha) + col[c] * alpha;
    }
}

// ---------------------------------------------------------------------------------------------
// Image folders

export interface FolderOptions extends RenderOptions {
  out: string;
  classes: readonly string[];
  perClass: number;
  seed: number;
  /** png (lossless, the default: the network sees exactly the rendered pixels) or jpeg. */
  format?: 'png' | 'jpeg';
}

export interface ManifestEntry extends SampleInfo {
  /** Path relative to the folder, with '/' separators. */
  file: string;
}

export interface Manifest {
  version: number;
  options: Omit<FolderOptions, 'out'>;
  samples: ManifestEntry[];
}

/**
 * Hidden (leading '.'), so the dataset scanner ignores it: the folder stays a plain class-folder
 * dataset, and the demo can still tell easy from hard samples afterwards.
 */
export const MANIFEST = '.shapes-manifest.json';

export function fileName(index: number, format: 'png' | 'jpeg'): string {
  return `${String(index).padStart(4, '0')}.${format === 'png' ? 'png' : 'jpg'}`;
}

function sameOptions(m: Manifest | null, o: Omit<FolderOptions, 'out'>): boolean {
  return !!m && m.version === GENERATOR_VERSION && JSON.stringify(m.options) === JSON.stringify(o);
}

export function readManifest(dir: string): Manifest | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return null;
  }
}

/**
 * Writes `<out>/<class>/<nnnn>.png` for every class, plus the manifest. Idempotent: when `out`
 * already holds a complete folder made with the same options, nothing is written (returns
 * reused = true). Otherwise the folder is built next to `out` and renamed into place, so an
 * interrupted run never leaves a half-written dataset that a later run would trust.
 */
export async function writeShapeFolder(o: FolderOptions): Promise<{ manifest: Manifest; reused: boolean }> {
  for (const c of o.classes) if (!isKnownClass(c)) throw new Error(`unknown shape class '${c}'`);
  const format = o.format ?? 'png';
  const options: Omit<FolderOptions, 'out'> = {
    classes: [...o.classes],
    perClass: o.perClass,
    seed: o.seed,
    size: o.size ?? 32,
    hardFraction: o.hardFraction ?? 0.5,
    format,
  };
  const existing = readManifest(o.out);
  if (sameOptions(existing, options)) return { manifest: existing!, reused: true };
  // Replacing a folder is only safe when this generator made it (a stale version or other options).
  if (!existing && fs.existsSync(o.out) && fs.readdirSync(o.out).length)
    throw new Error(`${o.out} exists and was not made by the shapes generator; not overwriting it`);

  const tmp = tempDirBeside(o.out);
  const samples: ManifestEntry[] = [];
  const S = options.size!;
  for (const cls of o.classes) {
    fs.mkdirSync(path.join(tmp, cls), { recursive: true });
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < o.perClass; i++) {
      const r = renderSample(cls, o.seed, i, options);
      const file = `${cls}/${fileName(i, format)}`;
      const img = sharpLib()(Buffer.from(r.pixels.buffer, r.pixels.byteOffset, r.pixels.byteLength), {
        raw: { width: S, height: S, channels: 3 },
      });
      jobs.push((format === 'png' ? img.png() : img.jpeg({ quality: 92 })).toFile(path.join(tmp, file)));
      samples.push({ file, ...r.info });
    }
    await Promise.all(jobs);
  }
  const manifest: Manifest = { version: GENERATOR_VERSION, options, samples };
  fs.writeFileSync(path.join(tmp, MANIFEST), JSON.stringify(manifest));
  replaceDirAtomic(tmp, o.out);
  return { manifest, reused: false };
}

// ---------------------------------------------------------------------------------------------
// Counting task (regression demo): how many shapes are in the image?
//
// Each image holds 1..maxCount solid shapes (discs and squares, random colours, one size per
// image) on a noisy background with a gradient, placed without overlap: centres are drawn by
// rejection so that no two shapes' bounding circles come closer than `gap` pixels. The target is
// the count. Like renderSample, an image is a pure function of (seed, index, options).

export interface CountingOptions {
  /** Image side in pixels; default 32. */
  size?: number;
  /** Largest count; default 5 (counts are uniform in 1..maxCount). */
  maxCount?: number;
}

export interface CountingSample {
  pixels: Uint8Array;
  count: number;
  /** Shape radius in pixels (the same for every shape of the image). */
  radius: number;
}

export function renderCounting(seed: number, index: number, opts: CountingOptions = {}): CountingSample {
  const S = opts.size ?? 32;
  const maxCount = opts.maxCount ?? 5;
  if (!Number.isInteger(maxCount) || maxCount < 1)
    throw new Error(`maxCount must be a positive integer, got ${maxCount}`);
  const rng = mulberry32(hashInts(seed, hashString('counting'), index));
  const uni = (a: number, b: number) => a + (b - a) * rng();
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const wanted = 1 + Math.floor(rng() * maxCount);
  // Radius so that maxCount shapes fit comfortably: about a quarter of the area covered at most.
  const rMax = Math.max(1.2, Math.sqrt((S * S * 0.25) / (Math.PI * maxCount)));
  const radius = uni(0.7 * rMax, rMax);
  const gap = Math.max(1, (0.15 * S) / 8);
  const centres: Pt[] = [];
  for (let tries = 0; centres.length < wanted && tries < 2000; tries++) {
    const c: Pt = [uni(radius + 0.5, S - radius - 0.5), uni(radius + 0.5, S - radius - 0.5)];
    if (centres.every((o) => Math.hypot(o[0] - c[0], o[1] - c[1]) >= 2 * radius + gap)) centres.push(c);
  }
  const bg = [uni(0.15, 0.85), uni(0.15, 0.85), uni(0.15, 0.85)];
  const img = new Float32Array(S * S * 3);
  const gDir = uni(0, 2 * Math.PI);
  const gAmp = uni(0.02, 0.12);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const t = ((x + 0.5) / S - 0.5) * Math.cos(gDir) * gAmp + ((y + 0.5) / S - 0.5) * Math.sin(gDir) * gAmp;
      for (let c = 0; c < 3; c++) img[(y * S + x) * 3 + c] = bg[c] + t;
    }
  for (const [cx, cy] of centres) {
    // A colour that stands out from the background (luma difference >= 0.3 when one is found).
    let fg = [rng(), rng(), rng()];
    for (let t = 0; t < 50 && Math.abs(luma(fg) - luma(bg)) < 0.3; t++) fg = [rng(), rng(), rng()];
    const square = rng() < 0.5;
    const h = radius / Math.SQRT2 + 0.3; // squares inscribed in the bounding circle
    for (let y = Math.max(0, Math.floor(cy - radius - 1)); y < Math.min(S, Math.ceil(cy + radius + 1)); y++)
      for (let x = Math.max(0, Math.floor(cx - radius - 1)); x < Math.min(S, Math.ceil(cx + radius + 1)); x++) {
        let cov = 0;
        for (let sy = 0; sy < SS; sy++)
          for (let sx = 0; sx < SS; sx++) {
            const px = x + (sx + 0.5) / SS - cx;
            const py = y + (sy + 0.5) / SS - cy;
            if (square ? Math.abs(px) <= h && Math.abs(py) <= h : px * px + py * py <= radius * radius) cov++;
          }
        if (!cov) continue;
        const a = cov / (SS * SS);
        const o = (y * S + x) * 3;
        for (let c = 0; c < 3; c++) img[o + c] = img[o + c] * (1 - a) + fg[c] * a;
      }
  }
  const noise = uni(0.01, 0.05);
  const pixels = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S * 3; i++) pixels[i] = Math.round(clamp01(img[i] + gauss() * noise) * 255);
  return { pixels, count: centres.length, radius };
}

export interface CountingFolderOptions extends CountingOptions {
  out: string;
  /** Number of images. */
  n: number;
  seed: number;
  /** targets.csv (the default) or targets.json. */
  targets?: 'csv' | 'json';
}

/**
 * Writes `<out>/<nnnn>.png` and `<out>/targets.csv` (`file,value` with a header) or
 * targets.json ({"0000.png": 3, ...}): a regression folder `met train --task regression` reads
 * as it is. The folder is built next to `out` and renamed into place.
 */
export async function writeCountingFolder(o: CountingFolderOptions): Promise<{ files: string[]; counts: number[] }> {
  const S = o.size ?? 32;
  if (
    fs.existsSync(o.out) &&
    fs.readdirSync(o.out).length &&
    !fs.existsSync(path.join(o.out, 'targets.csv')) &&
    !fs.existsSync(path.join(o.out, 'targets.json'))
  )
    throw new Error(`${o.out} exists and was not made by the counting generator; not overwriting it`);
  const tmp = tempDirBeside(o.out);
  const files: string[] = [];
  const counts: number[] = [];
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < o.n; i++) {
    const r = renderCounting(o.seed, i, o);
    const file = fileName(i, 'png');
    jobs.push(
      sharpLib()(Buffer.from(r.pixels.buffer, r.pixels.byteOffset, r.pixels.byteLength), {
        raw: { width: S, height: S, channels: 3 },
      })
        .png()
        .toFile(path.join(tmp, file)),
    );
    files.push(file);
    counts.push(r.count);
  }
  await Promise.all(jobs);
  if ((o.targets ?? 'csv') === 'json')
    fs.writeFileSync(
      path.join(tmp, 'targets.json'),
      JSON.stringify(Object.fromEntries(files.map((f, i) => [f, counts[i]])), null, 1),
    );
  else
    fs.writeFileSync(
      path.join(tmp, 'targets.csv'),
      ['file,value', ...files.map((f, i) => `${f},${counts[i]}`)].join('\n') + '\n',
    );
  replaceDirAtomic(tmp, o.out);
  return { files, counts };
}
