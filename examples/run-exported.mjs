#!/usr/bin/env node
// Budgeted early-exit inference with a `met export` folder, using only onnxruntime-node and
// sharp: no code of the MET project. Scores a folder of class sub-folders and prints accuracy,
// expected GFLOPs per image and how many images left at each exit.
//
//   node examples/run-exported.mjs EXPORT_DIR DATA_DIR [--batch N] [--json]
//
//   EXPORT_DIR  what `met export --run RUN --out EXPORT_DIR` wrote: segment_*.onnx, thresholds.json
//   DATA_DIR    DATA_DIR/<class name>/<image>; class names as in thresholds.json "classes"
//               (folders with other names are skipped)
//
// Per batch: run segment 1 on the images; a row leaves when its largest probability is >= that
// segment's threshold; the `state` rows of those still running go to segment 2 as `state_in`, and
// so on. The last segment takes everyone left.
//
// Preprocessing: decode with sharp (EXIF rotation, alpha dropped, 8-bit sRGB), resize with
// sharp's default kernel when the image is not already the input size, grey = Pillow's
// ITU-R 601 luma for 1-channel models, then (pixel / 255 - mean) / std per channel. `met`
// resizes like Pillow instead, so for images that need resizing the answers can differ slightly
// from `met eval`; images that already have the input size give `met eval`'s numbers exactly.
//
// Thresholds in thresholds.json are numbers or the strings "Infinity" / "-Infinity" (JSON has no
// infinities); null, which JSON.stringify writes for them, is read as "nobody leaves here"
// except at the last segment, which always accepts.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

function parseCli(argv) {
  const opts = { batch: 32, json: false, pos: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') opts.json = true;
    else if (a === '--batch') opts.batch = Number(argv[++i]);
    else if (a === '--help' || a === '-h') opts.help = true;
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else opts.pos.push(a);
  }
  if (!Number.isInteger(opts.batch) || opts.batch < 1) throw new Error('--batch expects a positive integer');
  return opts;
}

/** A threshold from JSON (see the header); the last segment accepts every sample. */
function threshold(v, last) {
  if (last) return -Infinity;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = Number(v);
    return Number.isNaN(n) ? Infinity : n;
  }
  return Infinity;
}

/** [{file, label}] for DATA_DIR/<class>/<image>, in a stable order. */
function listImages(root, classes) {
  const out = [];
  const skipped = [];
  for (const d of fs.readdirSync(root, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!d.isDirectory()) continue;
    const label = classes.indexOf(d.name);
    if (label < 0) {
      skipped.push(d.name);
      continue;
    }
    for (const f of fs.readdirSync(path.join(root, d.name)).sort()) {
      if (IMAGE_EXT.has(path.extname(f).toLowerCase())) out.push({ file: path.join(root, d.name, f), label });
    }
  }
  return { images: out, skipped };
}

/** Python's round(), as torchvision's CenterCrop uses for its offsets. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** One image as normalised planar floats written into out[offset ...]. */
async function loadImage(file, pp, tables, out, offset) {
  const S = pp.imageSize;
  const buf = await fs.promises.readFile(file);
  const meta = await sharp(buf).metadata();
  let img = sharp(buf).rotate().removeAlpha().toColourspace('srgb');
  const w = meta.autoOrient?.width ?? meta.width;
  const h = meta.autoOrient?.height ?? meta.height;
  if (pp.resize === 'resize-center-crop') {
    // timm's eval transform: shorter side to floor(S / crop_pct), then the centre S x S.
    const short = Math.floor(S / pp.cropPct);
    const [rw, rh] = w <= h ? [short, Math.trunc((short * h) / w)] : [Math.trunc((short * w) / h), short];
    if (rw !== w || rh !== h) img = img.resize(rw, rh, { fit: 'fill' });
    img = img.extract({ left: roundHalfEven((rw - S) / 2), top: roundHalfEven((rh - S) / 2), width: S, height: S });
  } else if (w !== S || h !== S) {
    img = img.resize(S, S, { fit: 'fill' });
  }
  const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== S || info.height !== S) throw new Error(`${file}: decoded as ${info.width}x${info.height}x${info.channels}`);
  const plane = S * S;
  if (pp.channels === 1) {
    for (let i = 0, j = 0; i < plane; i++, j += 3) {
      const grey = (data[j] * 19595 + data[j + 1] * 38470 + data[j + 2] * 7471 + 0x8000) >> 16;
      out[offset + i] = tables[0][grey];
    }
  } else {
    for (let i = 0, j = 0; i < plane; i++, j += 3) {
      out[offset + i] = tables[0][data[j]];
      out[offset + plane + i] = tables[1][data[j + 1]];
      out[offset + 2 * plane + i] = tables[2][data[j + 2]];
    }
  }
}

/** float32((v / 255 - mean) / std) for every 8-bit level, per channel. */
function normalisation(pp) {
  return Array.from({ length: pp.channels }, (_, c) => {
    const m = pp.mean.length === 1 ? pp.mean[0] : pp.mean[c];
    const s = pp.std.length === 1 ? pp.std[0] : pp.std[c];
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v / 255 - m) / s;
    return t;
  });
}

/** Rows `rows` of a [B, ...] float32 ort.Tensor. */
function gatherRows(t, rows) {
  const per = t.data.length / t.dims[0];
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => out.set(t.data.subarray(r * per, (r + 1) * per), i * per));
  return new ort.Tensor('float32', out, [rows.length, ...t.dims.slice(1)]);
}

async function main() {
  const opts = parseCli(process.argv.slice(2));
  if (opts.help || opts.pos.length !== 2) {
    console.log('usage: node examples/run-exported.mjs EXPORT_DIR DATA_DIR [--batch N] [--json]');
    return opts.help ? 0 : 2;
  }
  const [dir, dataDir] = opts.pos;
  const m = JSON.parse(fs.readFileSync(path.join(dir, 'thresholds.json'), 'utf8'));
  const pp = m.preprocess;
  const C = m.classes.length;
  const segs = m.segments;
  const T = segs.map((s, j) => threshold(s.threshold, j === segs.length - 1));
  const sessions = [];
  for (const s of segs) sessions.push(await ort.InferenceSession.create(path.join(dir, s.file)));

  const { images, skipped } = listImages(dataDir, m.classes);
  for (const s of skipped) console.error(`skipping folder ${s}: not one of the classes ${m.classes.join(', ')}`);
  if (!images.length) throw new Error(`${dataDir}: no images in folders named like the classes`);

  const tables = normalisation(pp);
  const per = pp.channels * pp.imageSize * pp.imageSize;
  const exitCounts = new Array(segs.length).fill(0);
  let correct = 0;
  for (let b = 0; b < images.length; b += opts.batch) {
    const part = images.slice(b, b + opts.batch);
    const x = new Float32Array(part.length * per);
    await Promise.all(part.map((im, i) => loadImage(im.file, pp, tables, x, i * per)));
    let input = new ort.Tensor('float32', x, [part.length, pp.channels, pp.imageSize, pp.imageSize]);
    let alive = part.map((_, i) => i); // rows of `part` still running, in the order of `input`
    for (let j = 0; j < segs.length && alive.length; j++) {
      const out = await sessions[j].run({ [segs[j].input.name]: input });
      const probs = out.probs.data;
      const keep = [];
      alive.forEach((i, row) => {
        let best = 0;
        for (let c = 1; c < C; c++) if (probs[row * C + c] > probs[row * C + best]) best = c;
        if (probs[row * C + best] >= T[j]) {
          exitCounts[j]++;
          if (best === part[i].label) correct++;
        } else keep.push(row);
      });
      if (keep.length && j + 1 < segs.length) input = gatherRows(out.state, keep);
      alive = keep.map((row) => alive[row]);
    }
  }
  const n = images.length;
  // Σ_j (share leaving at j) · cumulative GFLOPs of j: the expected cost per image.
  let gflops = 0;
  exitCounts.forEach((k, j) => {
    if (k) gflops += (k / n) * segs[j].cumulativeGflops;
  });
  const accuracy = correct / n;
  if (opts.json) console.log(JSON.stringify({ images: n, correct, accuracy, gflops, exitCounts }));
  else {
    console.log(`${n} images: accuracy ${(100 * accuracy).toFixed(2)}% (${correct}/${n}), expected ${gflops >= 0.1 ? gflops.toFixed(4) : gflops.toPrecision(4)} GFLOPs per image`);
    console.log(`exits taken: ${exitCounts.map((k, j) => `exit ${segs[j].exit}: ${k}`).join(', ')}`);
  }
  for (const s of sessions) await s.release();
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
  },
);
