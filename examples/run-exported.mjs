#!/usr/bin/env node
// Budgeted early-exit inference with a `met export` folder, using only onnxruntime-node and
// sharp: no code of the MET project. Scores a folder of class sub-folders and prints accuracy,
// expected GFLOPs per image and how many images left at each exit; for an export of a regression
// run, a folder of images with their target values, and prints MAE and RMSE instead of accuracy.
//
//   node examples/run-exported.mjs EXPORT_DIR DATA_DIR [--batch N] [--json]
//
//   EXPORT_DIR  what `met export --run RUN --out EXPORT_DIR` wrote: segment_*.onnx, thresholds.json
//   DATA_DIR    classification: DATA_DIR/<class name>/<image>; class names as in thresholds.json
//               "classes" (folders with other names are skipped).
//               regression ("task": "regression"): images anywhere below DATA_DIR and, at its
//               root, targets.csv (`file,value` lines, optional header, '#' comments) or
//               targets.json ({"file": value}); `file` relative to DATA_DIR with '/' or a bare
//               file name. Images without a value are skipped (and named on stderr).
//
// Per batch: run segment 1 on the images; a row leaves when its confidence is >= that segment's
// threshold; the `state` rows of those still running go to segment 2 as `state_in`, and so on.
// The last segment takes everyone left. The confidence is the largest probability in `probs`
// ("confidence": "max-prob"), or for regression the agreement of consecutive exits,
// float32(-|value_j - value_{j-1}|) ("confidence": "agreement"), which segment 1 does not have:
// nobody leaves there (unless it is the only segment).
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

// The project's image extensions (src/engine/data/files.ts IMAGE_EXTENSIONS; a test keeps them equal):
// this example runs with onnxruntime-node and sharp alone, without the project's code.
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

const TARGET_FILES = ['targets.csv', 'targets.json', 'labels.csv', 'labels.json', 'values.csv', 'values.json'];

/** Splits a CSV line into fields (double quotes group, "" is a literal quote). */
function csvFields(line) {
  const out = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (q) {
      if (ch === '"' && line[i + 1] === '"') ((cur += '"'), i++);
      else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') (out.push(cur), (cur = ''));
    else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Map of file key -> value from DATA_DIR's targets file (the same formats `met train --task regression` reads). */
function readTargets(root) {
  const name = TARGET_FILES.find((n) => fs.existsSync(path.join(root, n)));
  if (!name)
    throw new Error(`${root}: a regression export needs one of ${TARGET_FILES.join(', ')} at the folder's root`);
  const text = fs.readFileSync(path.join(root, name), 'utf8');
  const map = new Map();
  const norm = (k) => k.trim().replace(/\\/g, '/').replace(/^\.\//, '');
  if (name.endsWith('.json')) {
    for (const [k, v] of Object.entries(JSON.parse(text))) map.set(norm(k), Number(v));
  } else {
    let first = true;
    text
      .replace(/^\uFEFF/, '')
      .split(/\r?\n/)
      .forEach((line, i) => {
        if (!line.trim() || line.trimStart().startsWith('#')) return;
        const f = csvFields(line);
        if (f.length !== 2) throw new Error(`${name} line ${i + 1}: expected 2 fields (file,value), found ${f.length}`);
        const header = first && !Number.isFinite(Number(f[1].trim())) && f[1].trim() !== '';
        first = false;
        if (!header) map.set(norm(f[0]), f[1].trim() === '' ? NaN : Number(f[1]));
      });
  }
  return { name, map };
}

/** [{file, value}] for the images below DATA_DIR that have a finite value, in a stable order. */
function listRegressionImages(root) {
  const { name, map } = readTargets(root);
  const files = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const f = path.join(d, e.name);
      // Symbolic links to images count as images (stat follows them).
      if (e.isDirectory() || (e.isSymbolicLink() && fs.statSync(f).isDirectory())) walk(f);
      else if (IMAGE_EXT.has(path.extname(e.name).toLowerCase())) files.push(f);
    }
  };
  walk(root);
  const baseCount = new Map();
  for (const f of files) baseCount.set(path.basename(f), (baseCount.get(path.basename(f)) ?? 0) + 1);
  const images = [];
  const skipped = [];
  for (const f of files) {
    const rel = path.relative(root, f).split(path.sep).join('/');
    let v = map.get(rel);
    if (v === undefined && baseCount.get(path.basename(f)) === 1) v = map.get(path.basename(f));
    if (v === undefined || !Number.isFinite(v)) skipped.push(`${rel}: no numeric value in ${name}`);
    else images.push({ file: f, value: v });
  }
  return { images, skipped };
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
  if (info.channels !== 3 || info.width !== S || info.height !== S)
    throw new Error(`${file}: decoded as ${info.width}x${info.height}x${info.channels}`);
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

  const regression = m.task === 'regression';
  let images;
  if (regression) {
    const r = listRegressionImages(dataDir);
    for (const s of r.skipped) console.error(`skipping ${s}`);
    if (!r.images.length) throw new Error(`${dataDir}: no images with a value`);
    images = r.images;
  } else {
    const r = listImages(dataDir, m.classes);
    for (const s of r.skipped) console.error(`skipping folder ${s}: not one of the classes ${m.classes.join(', ')}`);
    if (!r.images.length) throw new Error(`${dataDir}: no images in folders named like the classes`);
    images = r.images;
  }

  const tables = normalisation(pp);
  const per = pp.channels * pp.imageSize * pp.imageSize;
  const exitCounts = new Array(segs.length).fill(0);
  let correct = 0;
  let absErr = 0; // regression: Σ |value - target| and Σ (value - target)² over the images
  let sqErr = 0;
  for (let b = 0; b < images.length; b += opts.batch) {
    const part = images.slice(b, b + opts.batch);
    const x = new Float32Array(part.length * per);
    await Promise.all(part.map((im, i) => loadImage(im.file, pp, tables, x, i * per)));
    let input = new ort.Tensor('float32', x, [part.length, pp.channels, pp.imageSize, pp.imageSize]);
    let alive = part.map((_, i) => i); // rows of `part` still running, in the order of `input`
    let prev = null; // regression: the previous segment's values of the rows in `alive`
    for (let j = 0; j < segs.length && alive.length; j++) {
      const out = await sessions[j].run({ [segs[j].input.name]: input });
      const last = j === segs.length - 1;
      const keep = [];
      if (regression) {
        const value = out.value.data; // [rows, 1], in the targets' units
        alive.forEach((i, row) => {
          // Math.fround: the float32 score the thresholds were fitted on.
          const conf = prev ? Math.fround(-Math.abs(value[row] - prev[row])) : NaN;
          if (last || conf >= T[j]) {
            exitCounts[j]++;
            const d = value[row] - part[i].value;
            absErr += Math.abs(d);
            sqErr += d * d;
          } else keep.push(row);
        });
        if (keep.length && !last) {
          input = gatherRows(out.state, keep);
          prev = keep.map((row) => value[row]);
        }
        alive = keep.map((row) => alive[row]);
        continue;
      }
      const probs = out.probs.data;
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
  const fmtG = (g) => (g >= 0.1 ? g.toFixed(4) : g.toPrecision(4));
  if (regression) {
    const mae = absErr / n;
    const rmse = Math.sqrt(sqErr / n);
    if (opts.json) console.log(JSON.stringify({ images: n, mae, rmse, gflops, exitCounts }));
    else {
      console.log(
        `${n} images: MAE ${mae.toPrecision(4)}, RMSE ${rmse.toPrecision(4)}, expected ${fmtG(gflops)} GFLOPs per image`,
      );
      console.log(`exits taken: ${exitCounts.map((k, j) => `exit ${segs[j].exit}: ${k}`).join(', ')}`);
    }
    for (const s of sessions) await s.release();
    return 0;
  }
  const accuracy = correct / n;
  if (opts.json) console.log(JSON.stringify({ images: n, correct, accuracy, gflops, exitCounts }));
  else {
    console.log(
      `${n} images: accuracy ${(100 * accuracy).toFixed(2)}% (${correct}/${n}), expected ${gflops >= 0.1 ? gflops.toFixed(4) : gflops.toPrecision(4)} GFLOPs per image`,
    );
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
