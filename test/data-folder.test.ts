// Image-folder datasets (src/engine/data/folder.ts, cache.ts, random.ts). Every image is
// generated here with sharp inside a temporary folder; nothing binary is committed.

import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { UserError } from '../src/engine/tensor';
import { loadImageTensor, type Preprocess } from '../src/engine/data/image';
import { ImageCache, randomResizedCropParams } from '../src/engine/data/cache';
import { compareCodePoints, type Dataset, type Sample, scanDataset, splitCounts } from '../src/engine/data/folder';
import { epochOrder, mulberry32, shuffled, stepRng } from '../src/engine/data/random';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'met-data-folder-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let nextDir = 0;
/** A fresh dataset root for one test. */
function newRoot(): string {
  const d = path.join(tmp, `ds${nextDir++}`);
  fs.mkdirSync(d);
  return d;
}

/** Writes a w x h RGB image with a pattern that depends on `salt`; format from the extension. */
async function writeImage(file: string, w = 12, h = 10, salt = 0): Promise<string> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + salt * 101 + ((i / 3) | 0) * 13) & 255;
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jpg' || ext === '.jpeg') await img.jpeg({ quality: 90 }).toFile(file);
  else if (ext === '.webp') await img.webp({ lossless: true }).toFile(file);
  else if (ext === '.gif') await img.gif().toFile(file);
  else if (ext === '.tif' || ext === '.tiff') await img.tiff().toFile(file);
  else await img.png().toFile(file);
  return file;
}

/** Writes `n` small images into dir (names img000.png ...). */
async function fill(dir: string, n: number, ext = 'png', salt = 0): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++)
    out.push(await writeImage(path.join(dir, `img${String(i).padStart(3, '0')}.${ext}`), 12, 10, salt + i));
  return out;
}

const rgb = (size: number, extra: Partial<Preprocess> = {}): Preprocess => ({
  imageSize: size,
  channels: 3,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  resize: 'direct',
  ...extra,
});

/** Number of samples per label. */
function perClass(samples: Sample[], nClasses: number): number[] {
  const c = new Array<number>(nClasses).fill(0);
  for (const s of samples) c[s.label]++;
  return c;
}

function allFiles(d: Dataset): string[] {
  return [...d.train, ...d.val, ...d.test].map((s) => s.file);
}

async function assertUserError(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected UserError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('splitCounts: rounding, minimum of one val/test image from 3 images, train never empty', () => {
  const p: [number, number, number] = [70, 10, 20];
  assert.deepEqual(splitCounts(1, p), [1, 0, 0]);
  assert.deepEqual(splitCounts(2, p), [2, 0, 0]);
  assert.deepEqual(splitCounts(3, p), [1, 1, 1]);
  assert.deepEqual(splitCounts(10, p), [7, 1, 2]);
  assert.deepEqual(splitCounts(25, p), [17, 3, 5]); // 2.5 rounds up
  assert.deepEqual(splitCounts(100, p), [70, 10, 20]);
  assert.deepEqual(splitCounts(1000, [60, 25, 15]), [600, 250, 150]);
  // A zero percentage gets nothing, even for big classes.
  assert.deepEqual(splitCounts(50, [80, 20, 0]), [40, 10, 0]);
  assert.deepEqual(splitCounts(3, [90, 10, 0]), [2, 1, 0]);
  // Train keeps at least one; the larger of val/test gives images back.
  assert.deepEqual(splitCounts(3, [10, 60, 30]), [1, 1, 1]);
  assert.deepEqual(splitCounts(2, [10, 45, 45]), [1, 1, 0]);
  // A train percentage of 0 leaves train empty; val + test never exceed n.
  assert.deepEqual(splitCounts(7, [0, 0, 100]), [0, 0, 7]);
  assert.deepEqual(splitCounts(3, [0, 50, 50]), [0, 2, 1]);
  for (let n = 0; n < 60; n++) {
    const [a, b, c] = splitCounts(n, p);
    assert.equal(a + b + c, n);
    if (n >= 1) assert.ok(a >= 1);
    if (n >= 3) assert.ok(b >= 1 && c >= 1, `n=${n}`);
    // Within one image of the exact share (except where the minimum of 1 applies).
    if (n >= 10) assert.ok(Math.abs(b - n * 0.1) <= 1 && Math.abs(c - n * 0.2) <= 1, `n=${n}`);
  }
});

test('random helpers: mulberry32, shuffled, epochOrder and stepRng are deterministic', () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 5 }, () => a());
  assert.deepEqual(
    xs,
    Array.from({ length: 5 }, () => b()),
  );
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs, Array.from({ length: 5 }, mulberry32(43)));

  const items = Array.from({ length: 50 }, (_, i) => i);
  const s1 = shuffled(items, 7);
  assert.deepEqual(s1, shuffled(items, 7));
  assert.notDeepEqual(s1, items);
  assert.deepEqual(
    [...s1].sort((x, y) => x - y),
    items,
    'a permutation',
  );
  assert.deepEqual(
    items,
    Array.from({ length: 50 }, (_, i) => i),
    'input untouched',
  );

  assert.deepEqual(epochOrder(items, 3, 5), shuffled(items, 3 * 1000003 + 5));
  assert.notDeepEqual(epochOrder(items, 3, 5), epochOrder(items, 3, 6));
  assert.notDeepEqual(epochOrder(items, 3, 5), epochOrder(items, 4, 5));

  const r1 = stepRng(1, 2, 3);
  const r2 = stepRng(1, 2, 3);
  const d1 = Array.from({ length: 8 }, () => r1());
  assert.deepEqual(
    d1,
    Array.from({ length: 8 }, () => r2()),
  );
  assert.notDeepEqual(d1, Array.from({ length: 8 }, stepRng(1, 2, 4)));
  assert.notDeepEqual(d1, Array.from({ length: 8 }, stepRng(1, 3, 2)));
  assert.throws(() => mulberry32(1.5), RangeError);
});

test('class-folder layout: classes, stratified counts per class, every file exactly once', async () => {
  const root = newRoot();
  await fill(path.join(root, 'dog'), 20);
  await fill(path.join(root, 'cat'), 10, 'jpg');
  await fill(path.join(root, 'bird'), 3, 'webp');
  await writeImage(path.join(root, 'cat', 'nested', 'deep.gif'));
  await writeImage(path.join(root, 'bird', 'x.tiff'));
  const d = await scanDataset({ root });
  assert.equal(d.layout, 'class-folders');
  assert.equal(d.root, root);
  assert.deepEqual(d.classes, ['bird', 'cat', 'dog']);
  assert.deepEqual(d.skipped, []);
  assert.deepEqual(d.warnings, []);
  // bird 4 -> 2/1/1 (minimum of 1 each), cat 11 -> 8/1/2, dog 20 -> 14/2/4.
  assert.deepEqual(perClass(d.train, 3), [2, 8, 14]);
  assert.deepEqual(perClass(d.val, 3), [1, 1, 2]);
  assert.deepEqual(perClass(d.test, 3), [1, 2, 4]);
  const files = allFiles(d);
  assert.equal(new Set(files).size, files.length);
  assert.equal(files.length, 35);
  for (const s of [...d.train, ...d.val, ...d.test])
    assert.equal(
      path.basename(path.dirname(s.file)) === 'nested' ? 'cat' : path.basename(path.dirname(s.file)),
      d.classes[s.label],
    );
  assert.match(d.notes.join('\n'), /70\/10\/20.*seed 0/);
});

test('stratified split: same seed gives the same split, another seed a different one; percentages respected', async () => {
  const root = newRoot();
  await fill(path.join(root, 'a'), 20);
  await fill(path.join(root, 'b'), 20, 'png', 50);
  const d1 = await scanDataset({ root, seed: 5 });
  const d2 = await scanDataset({ root, seed: 5 });
  const d3 = await scanDataset({ root, seed: 6 });
  assert.deepEqual([d1.train, d1.val, d1.test], [d2.train, d2.val, d2.test]);
  assert.notDeepEqual([d1.val, d1.test], [d3.val, d3.test]);
  // The same files, only distributed differently.
  assert.deepEqual(allFiles(d1).sort(), allFiles(d3).sort());

  const d4 = await scanDataset({ root, split: [50, 30, 20], seed: 1 });
  assert.deepEqual(perClass(d4.train, 2), [10, 10]);
  assert.deepEqual(perClass(d4.val, 2), [6, 6]);
  assert.deepEqual(perClass(d4.test, 2), [4, 4]);
  const d5 = await scanDataset({ root, split: [80, 20, 0] });
  assert.deepEqual([d5.train.length, d5.val.length, d5.test.length], [32, 8, 0]);

  await assertUserError(scanDataset({ root, split: [70, 10, 10] }), /add up to 100/);
  // Everything to test (how `met eval --data` reads another folder).
  const d6 = await scanDataset({ root, split: [0, 0, 100] });
  assert.deepEqual([d6.train.length, d6.val.length, d6.test.length], [0, 0, 40]);
  await assertUserError(scanDataset({ root, seed: 0.5 }), /seed must be an integer/);
});

test('split-folder layout: union of classes, a split may miss a class, stray files and folders reported', async () => {
  const root = newRoot();
  await fill(path.join(root, 'train', 'cat'), 4);
  await fill(path.join(root, 'train', 'dog'), 5);
  await fill(path.join(root, 'train', 'eel'), 2);
  await fill(path.join(root, 'val', 'cat'), 2);
  await fill(path.join(root, 'val', 'dog'), 1);
  await fill(path.join(root, 'test', 'cat'), 1);
  await fill(path.join(root, 'test', 'fox'), 2);
  await writeImage(path.join(root, 'train', 'stray.png'));
  await writeImage(path.join(root, 'loose.png'));
  await fill(path.join(root, 'extra', 'cow'), 2);
  const d = await scanDataset({ root });
  assert.equal(d.layout, 'split-folders');
  assert.deepEqual(d.classes, ['cat', 'dog', 'eel', 'fox']);
  assert.deepEqual(perClass(d.train, 4), [4, 5, 2, 0]);
  assert.deepEqual(perClass(d.val, 4), [2, 1, 0, 0]);
  assert.deepEqual(perClass(d.test, 4), [1, 0, 0, 2]);
  assert.deepEqual(
    d.skipped.map((s) => [path.relative(root, s.file), s.reason]),
    [
      ['loose.png', 'not inside a train/, val/ or test/ folder'],
      ['train/stray.png', 'not inside a class folder'],
    ],
  );
  assert.ok(
    d.warnings.some((w) => w.includes("'extra'")),
    d.warnings.join('\n'),
  );
  assert.ok(
    d.warnings.some((w) => /class 'fox' has no images in train\//.test(w)),
    d.warnings.join('\n'),
  );
  // Files inside a split come from that split's folder only.
  for (const s of d.val) assert.ok(s.file.startsWith(path.join(root, 'val') + path.sep));
});

test('split-folder layout without val/: val is carved out of train/ per class (val share relative to train + val)', async () => {
  const root = newRoot();
  await fill(path.join(root, 'train', 'a'), 8);
  await fill(path.join(root, 'train', 'b'), 16);
  await fill(path.join(root, 'train', 'c'), 3);
  await fill(path.join(root, 'test', 'a'), 2);
  await fill(path.join(root, 'test', 'b'), 2);
  const d = await scanDataset({ root, seed: 3 });
  assert.deepEqual(d.classes, ['a', 'b', 'c']);
  // 10 / (70 + 10) = 12.5%: a 8 -> 1, b 16 -> 2, c 3 -> 1 (minimum of one).
  assert.deepEqual(perClass(d.val, 3), [1, 2, 1]);
  assert.deepEqual(perClass(d.train, 3), [7, 14, 2]);
  assert.deepEqual(perClass(d.test, 3), [2, 2, 0]);
  for (const s of [...d.train, ...d.val]) assert.ok(s.file.startsWith(path.join(root, 'train') + path.sep));
  assert.match(d.notes.join('\n'), /no val\/ folder: 12\.5% of each class in train\//);
  const again = await scanDataset({ root, seed: 3 });
  assert.deepEqual(again.val, d.val);
  const other = await scanDataset({ root, seed: 4 });
  assert.deepEqual(allFiles(other).sort(), allFiles(d).sort());

  // Only train/: val carved, test empty (and said so).
  const root2 = newRoot();
  await fill(path.join(root2, 'train', 'x'), 10);
  await fill(path.join(root2, 'train', 'y'), 10);
  const d2 = await scanDataset({ root: root2 });
  assert.deepEqual([d2.train.length, d2.val.length, d2.test.length], [18, 2, 0]);
  assert.match(d2.notes.join('\n'), /no test\/ folder/);

  // 'valid/' is accepted as val/.
  const root3 = newRoot();
  await fill(path.join(root3, 'train', 'x'), 3);
  await fill(path.join(root3, 'train', 'y'), 3);
  await fill(path.join(root3, 'valid', 'y'), 2);
  const d3 = await scanDataset({ root: root3 });
  assert.deepEqual(perClass(d3.val, 2), [0, 2]);
  assert.deepEqual(perClass(d3.train, 2), [3, 3]);
});

test('layout detection: folders named test/ or constructor/ holding images are classes; val/ + valid/ is ambiguous', async () => {
  const root = newRoot();
  await fill(path.join(root, 'test'), 3);
  await fill(path.join(root, 'constructor'), 3);
  await fill(path.join(root, 'toString'), 3);
  const d = await scanDataset({ root });
  assert.equal(d.layout, 'class-folders');
  assert.deepEqual(d.classes, ['constructor', 'test', 'toString']);

  const both = newRoot();
  await fill(path.join(both, 'train', 'a'), 2);
  await fill(path.join(both, 'val', 'a'), 2);
  await fill(path.join(both, 'valid', 'a'), 2);
  await assertUserError(scanDataset({ root: both }), /both val\/ and valid\/ found/);

  const flatTrain = newRoot();
  await fill(path.join(flatTrain, 'train'), 2);
  await assertUserError(scanDataset({ root: flatTrain }), /train: no class folders/);
});

test('class names: non-ASCII folder and file names, code-point order, NFC/NFD spellings merged', async () => {
  const root = newRoot();
  const names = ['zebra', 'Ant', 'ñandú', '猫', '😀', 'ｚ'];
  for (const n of names) {
    await writeImage(path.join(root, 'train', n, 'фото 1.png'));
    await writeImage(path.join(root, 'train', n, '写真2.jpg'));
  }
  // The same class spelled in NFD (as macOS writes it) in val/.
  await writeImage(path.join(root, 'val', 'ñandú'.normalize('NFD'), 'ü.png'));
  const d = await scanDataset({ root });
  // Code points: A < z < ñ (U+F1) < 猫 (U+732B) < ｚ (U+FF5A) < 😀 (U+1F600). UTF-16 code
  // units would put the emoji (a surrogate pair, D83D) before ｚ.
  assert.deepEqual(d.classes, ['Ant', 'zebra', 'ñandú', '猫', 'ｚ', '😀']);
  assert.equal(d.train.length, 12);
  assert.deepEqual(
    d.val.map((s) => d.classes[s.label]),
    ['ñandú'],
  );
  assert.ok(compareCodePoints('ｚ', '😀') < 0 && '😀' < 'ｚ');
  const cache = new ImageCache({ pre: rgb(8) });
  const r = await cache.prepare(d.train);
  assert.equal(r.ok.length, 12);
  assert.deepEqual(r.failed, []);
});

test('missing, empty, image-less and one-class folders are UserErrors naming the folder', async () => {
  const missing = path.join(tmp, 'does-not-exist');
  await assertUserError(scanDataset({ root: missing }), /dataset folder not found: .*does-not-exist/);

  const empty = newRoot();
  fs.writeFileSync(path.join(empty, '.DS_Store'), 'x');
  await assertUserError(scanDataset({ root: empty }), new RegExp(`${escape(empty)}: the folder is empty`));

  const noImages = newRoot();
  fs.mkdirSync(path.join(noImages, 'a'));
  fs.mkdirSync(path.join(noImages, 'b'));
  fs.writeFileSync(path.join(noImages, 'a', 'notes.txt'), 'hello');
  await assertUserError(
    scanDataset({ root: noImages }),
    /no images found in 2 class folders \('a', 'b'\); 1 file skipped/,
  );

  const flat = newRoot();
  await fill(flat, 3);
  await assertUserError(scanDataset({ root: flat }), /found no class folders, only 3 files directly in the folder/);

  const one = newRoot();
  await fill(path.join(one, 'cats'), 4);
  await writeImage(path.join(one, 'stray.png'));
  await assertUserError(
    scanDataset({ root: one }),
    new RegExp(`^${escape(one)}: found 1 class folder \\('cats'\\); fine-tuning needs at least 2$`),
  );

  const asFile = path.join(tmp, 'a-file.png');
  await writeImage(asFile);
  await assertUserError(scanDataset({ root: asFile }), /not a folder/);

  const noTrain = newRoot();
  await fill(path.join(noTrain, 'val', 'a'), 2);
  await fill(path.join(noTrain, 'test', 'a'), 2);
  await assertUserError(scanDataset({ root: noTrain }), /no train\//);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('a class with a single image gives a warning naming the class and count', async () => {
  const root = newRoot();
  await fill(path.join(root, 'many'), 5);
  await fill(path.join(root, 'lonely'), 1);
  fs.mkdirSync(path.join(root, 'void'));
  const d = await scanDataset({ root });
  assert.deepEqual(d.classes, ['lonely', 'many']);
  assert.ok(
    d.warnings.some((w) => w.includes("'lonely'") && /only 1 image\b/.test(w)),
    d.warnings.join('\n'),
  );
  assert.ok(
    d.warnings.some((w) => w.includes("'void'") && /no usable images/.test(w)),
    d.warnings.join('\n'),
  );
  assert.deepEqual(perClass(d.train, 2), [1, 3]);
});

test('bad files are skipped with reasons (scan) or reported by prepare (decode), and the rest loads', async () => {
  const root = newRoot();
  const good = await fill(path.join(root, 'a'), 3);
  await fill(path.join(root, 'b'), 3, 'jpg', 9);
  // A JPEG cut at 60%: its header is fine, so the scan keeps it; decoding fails.
  const noise = Buffer.alloc(120 * 90 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + (i >> 5) * 104729) % 251;
  const whole = await sharp(noise, { raw: { width: 120, height: 90, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  const truncated = path.join(root, 'b', 'truncated.jpg');
  fs.writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length * 0.6)));
  // Cut inside the header: caught by the scan already.
  const stub = path.join(root, 'b', 'stub.jpg');
  fs.writeFileSync(stub, whole.subarray(0, 40));
  const text = path.join(root, 'a', 'text.png');
  fs.writeFileSync(text, 'this is not an image\n');
  const zero = path.join(root, 'a', 'zero.jpg');
  fs.writeFileSync(zero, '');
  const readme = path.join(root, 'a', 'README.txt');
  fs.writeFileSync(readme, 'cats');
  const inRoot = path.join(root, 'labels.csv');
  fs.writeFileSync(inRoot, 'a,b');

  const d = await scanDataset({ root, split: [100, 0, 0] });
  const reasons = new Map(d.skipped.map((s) => [s.file, s.reason]));
  assert.equal(reasons.get(text)?.startsWith('not an image'), true, reasons.get(text));
  assert.equal(reasons.get(zero), 'empty file (0 bytes)');
  assert.equal(reasons.get(readme), 'not an image file extension (.txt)');
  assert.equal(reasons.get(inRoot), 'not inside a class folder');
  assert.match(reasons.get(stub) ?? '', /^not an image/);
  assert.equal(reasons.has(truncated), false);
  assert.equal(d.skipped.length, 5);
  assert.equal(d.train.length, 7);

  const cache = new ImageCache({ pre: rgb(16) });
  const progress: number[] = [];
  const r = await cache.prepare(d.train, (done, total) => {
    assert.equal(total, 7);
    progress.push(done);
  });
  assert.deepEqual(progress, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(
    r.failed.map((f) => f.file),
    [truncated],
  );
  assert.match(r.failed[0].reason, /corrupt or truncated/);
  assert.equal(r.ok.length, 6);
  assert.ok(r.ok.some((s) => s.file === good[0]));
  const b = cache.batch(r.ok);
  assert.equal(b.images.length, 6 * 3 * 16 * 16);
  assert.throws(() => cache.batch(d.train), /truncated\.jpg failed to decode/);
  // Failures are remembered, not retried.
  const again = await cache.prepare(d.train, () => assert.fail('nothing left to decode'));
  assert.deepEqual(again, r);
});

test('a 6000x6000 JPEG loads and is cached small', async () => {
  const root = newRoot();
  const big = path.join(root, 'big', 'huge.jpg');
  fs.mkdirSync(path.dirname(big));
  await sharp({ create: { width: 6000, height: 6000, channels: 3, background: { r: 30, g: 160, b: 90 } } })
    .jpeg({ quality: 80 })
    .toFile(big);
  await fill(path.join(root, 'small'), 2);
  const d = await scanDataset({ root, split: [100, 0, 0] });
  assert.equal(d.train.length, 3);
  const pre = rgb(32, { mean: [0], std: [1] });

  const evalCache = new ImageCache({ pre });
  const r = await evalCache.prepare(d.train);
  assert.deepEqual(r.failed, []);
  assert.deepEqual(evalCache.cachedSize(big), { width: 32, height: 32, channels: 3 });
  // The 12x10 images are smaller than 32x32: their decoded source is kept instead.
  assert.deepEqual(evalCache.cachedSize(d.train.find((s) => s.file !== big)!.file), {
    width: 12,
    height: 10,
    channels: 3,
  });
  assert.ok(evalCache.bytes <= 3 * 32 * 32 * 3);
  const b = evalCache.batch([{ file: big, label: 0 }]);
  for (const [c, v] of [
    [0, 30],
    [1, 160],
    [2, 90],
  ])
    assert.ok(Math.abs(b.images[c * 1024 + 500] * 255 - v) <= 2);

  const augCache = new ImageCache({ pre, augment: { randomResizedCrop: {}, hflip: true } });
  await augCache.prepare(d.train);
  const sz = augCache.cachedSize(big)!;
  assert.ok(sz.width <= 64 && sz.width >= 32 && sz.width === sz.height, JSON.stringify(sz));
  // Small images are never enlarged for the cache.
  assert.deepEqual(augCache.cachedSize(d.train.find((s) => s.file !== big)!.file), {
    width: 12,
    height: 10,
    channels: 3,
  });
});

test('cache.batch without augmentation equals loadImageTensor exactly (RGB and grey, both resize modes)', async () => {
  const root = newRoot();
  const files = [
    await writeImage(path.join(root, 'a', 'small.png'), 12, 10, 1), // smaller than S: source kept
    await writeImage(path.join(root, 'a', 'wide.jpg'), 80, 40, 2), // larger: final pixels kept
    await writeImage(path.join(root, 'b', 'tall.webp'), 30, 70, 3),
    await writeImage(path.join(root, 'b', 'exact.png'), 24, 24, 4),
  ];
  const samples: Sample[] = files.map((file, i) => ({ file, label: i % 2 }));
  const pres: Preprocess[] = [
    rgb(24),
    rgb(24, { resize: 'resize-center-crop', interpolation: 'bicubic' }),
    { imageSize: 20, channels: 1, mean: [0.5], std: [0.25], resize: 'resize-center-crop', cropPct: 0.9 },
  ];
  for (const pre of pres) {
    const cache = new ImageCache({ pre });
    const r = await cache.prepare(samples);
    assert.equal(r.ok.length, 4);
    const b = cache.batch(samples);
    const per = pre.channels * pre.imageSize * pre.imageSize;
    assert.equal(b.images.length, 4 * per);
    assert.deepEqual([...b.labels], [0n, 1n, 0n, 1n]);
    for (let i = 0; i < files.length; i++) {
      const want = await loadImageTensor(files[i], pre);
      assert.deepEqual(b.images.subarray(i * per, (i + 1) * per), want, `${files[i]} ${JSON.stringify(pre)}`);
    }
    // Batches are repeatable and any subset / order works; an rng is ignored.
    assert.deepEqual(cache.batch(samples, mulberry32(1)).images, b.images);
    const rev = cache.batch([samples[3], samples[0]]);
    assert.deepEqual(rev.images.subarray(0, per), b.images.subarray(3 * per, 4 * per));
    assert.deepEqual([...rev.labels], [1n, 0n]);
  }
  const cache = new ImageCache({ pre: rgb(8) });
  assert.throws(() => cache.batch(samples), /was not prepared/);
});

test('hflip with a fixed rng mirrors the image exactly; a high draw leaves it as is', async () => {
  const root = newRoot();
  const file = await writeImage(path.join(root, 'a', 'x.png'), 40, 30, 5);
  const pre = rgb(16, { resize: 'resize-center-crop' });
  const want = await loadImageTensor(file, pre);
  const cache = new ImageCache({ pre, augment: { hflip: true } });
  await cache.prepare([{ file, label: 0 }]);
  assert.throws(() => cache.batch([{ file, label: 0 }]), /needs an rng/);
  const flipped = cache.batch([{ file, label: 0 }], () => 0).images;
  const kept = cache.batch([{ file, label: 0 }], () => 0.75).images;
  assert.deepEqual(kept, want);
  const S = 16;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) assert.equal(flipped[c * S * S + y * S + x], want[c * S * S + y * S + (S - 1 - x)]);
    }
  }
});

test('random resized crop: windows inside the image, deterministic per stepRng, full crop equals a direct resize', async () => {
  for (const [w, h] of [
    [1, 1],
    [7, 3],
    [100, 3],
    [3, 100],
    [224, 224],
    [640, 480],
  ]) {
    const rng = mulberry32(w * 1000 + h);
    for (let i = 0; i < 300; i++) {
      const win = randomResizedCropParams(w, h, [0.08, 1], [3 / 4, 4 / 3], rng);
      assert.ok(
        Number.isInteger(win.left) &&
          Number.isInteger(win.top) &&
          Number.isInteger(win.width) &&
          Number.isInteger(win.height),
      );
      assert.ok(win.width >= 1 && win.height >= 1 && win.left >= 0 && win.top >= 0, JSON.stringify(win));
      assert.ok(win.left + win.width <= w && win.top + win.height <= h, `${w}x${h} ${JSON.stringify(win)}`);
    }
  }
  // torchvision's arithmetic: side round(sqrt(0.25 * 640 * 480)) = 277, offsets floor(0.5 * (size - 277 + 1)).
  assert.deepEqual(
    randomResizedCropParams(640, 480, [0.25, 0.25], [1, 1], () => 0.5),
    { left: 182, top: 102, width: 277, height: 277 },
  );
  // No try fits (the area is always too large for this aspect): central fallback at the nearest ratio.
  assert.deepEqual(
    randomResizedCropParams(100, 10, [1, 1], [1, 1], () => 0.5),
    { left: 45, top: 0, width: 10, height: 10 },
  );

  const root = newRoot();
  const files = [
    await writeImage(path.join(root, 'a', 'p.png'), 60, 45, 1),
    await writeImage(path.join(root, 'b', 'q.jpg'), 50, 50, 2),
  ];
  const samples: Sample[] = files.map((file, i) => ({ file, label: i }));
  const pre = rgb(24);
  const cache = new ImageCache({
    pre,
    augment: { randomResizedCrop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] }, hflip: true },
  });
  assert.equal(cache.augmenting, true);
  await cache.prepare(samples);
  const b1 = cache.batch(samples, stepRng(7, 2, 11));
  const b2 = cache.batch(samples, stepRng(7, 2, 11));
  const b3 = cache.batch(samples, stepRng(7, 2, 12));
  assert.equal(b1.images.length, 2 * 3 * 24 * 24);
  assert.deepEqual(b1.images, b2.images);
  assert.notDeepEqual(b1.images, b3.images);
  assert.deepEqual([...b1.labels], [0n, 1n]);
  const lo = Math.min(...[0, 1, 2].map((c) => (0 - pre.mean[c]) / pre.std[c]));
  const hi = Math.max(...[0, 1, 2].map((c) => (1 - pre.mean[c]) / pre.std[c]));
  assert.ok(b1.images.every((v) => Number.isFinite(v) && v >= lo - 1e-6 && v <= hi + 1e-6));

  // A crop of the whole image (scale 1, the image's own aspect ratio), no flip: exactly the
  // 'direct' eval resize of the file, as the source (60x45 <= 2 * 24 short side) is uncropped.
  const whole = new ImageCache({ pre, augment: { randomResizedCrop: { scale: [1, 1], ratio: [60 / 45, 60 / 45] } } });
  await whole.prepare([samples[0]]);
  assert.deepEqual(whole.cachedSize(files[0]), { width: 60, height: 45, channels: 3 });
  assert.deepEqual(whole.batch([samples[0]], mulberry32(0)).images, await loadImageTensor(files[0], pre));

  await assert.rejects(
    async () => new ImageCache({ pre, augment: { randomResizedCrop: { scale: [0.5, 0.1] } } }),
    UserError,
  );
  await assert.rejects(
    async () => new ImageCache({ pre, augment: { randomResizedCrop: { ratio: [0, 1] } } }),
    UserError,
  );
});

test('memory estimate: 8-bit eval cache, random-crop source scale shrinks with the dataset size', () => {
  const pre = rgb(224);
  assert.equal(ImageCache.estimateBytes(5000, { pre }), 5000 * 224 * 224 * 3); // 750 MB
  assert.equal(ImageCache.sourceScaleFor(100, pre), 2);
  assert.equal(ImageCache.sourceScaleFor(1e6, pre), 1);
  const k = ImageCache.sourceScaleFor(5000, pre);
  assert.ok(k > 1 && k < 2, String(k));
  assert.ok(ImageCache.estimateBytes(5000, { pre, augment: { randomResizedCrop: {} } }) <= 2 * 1024 ** 3);
});

test('symbolic links: files count once by real path, in the class folder that holds them; links out of the root listed', async () => {
  const root = newRoot();
  await fill(path.join(root, 'a'), 5, 'png', 0);
  await fill(path.join(root, 'b'), 20, 'png', 100);
  // A class folder linking another class: b's images must not count again as class a.
  fs.symlinkSync('../b', path.join(root, 'a', 'link'));
  // A link to the root inside a class, and a loop: walked once, nothing counted twice.
  fs.symlinkSync('..', path.join(root, 'b', 'up'));
  fs.symlinkSync('.', path.join(root, 'a', 'loop'));
  // A second path to a file of the same class.
  fs.symlinkSync('img000.png', path.join(root, 'a', 'again.png'));
  // Images from outside the root, through a link: used, and listed.
  const outside = path.join(tmp, `outside${nextDir++}`);
  await fill(outside, 3, 'png', 200);
  fs.symlinkSync(outside, path.join(root, 'a', 'ext'));
  const d = await scanDataset({ root, split: [60, 20, 20] });
  const all: Sample[] = [...d.train, ...d.val, ...d.test];
  const real = all.map((s) => fs.realpathSync(s.file));
  assert.equal(new Set(real).size, all.length, 'a real file appears once');
  assert.equal(all.length, 5 + 20 + 3);
  const byClass = (c: string) => all.filter((s) => d.classes[s.label] === c).map((s) => fs.realpathSync(s.file));
  assert.ok(
    byClass('b').length === 20 && byClass('b').every((f) => path.dirname(f) === fs.realpathSync(path.join(root, 'b'))),
  );
  assert.equal(byClass('a').length, 8);
  // Each of b's images reached from a/link is skipped with a reason naming the kept path.
  const viaLink = d.skipped.filter((s) => s.file.startsWith(path.join(root, 'a', 'link') + path.sep));
  assert.equal(viaLink.length, 20);
  assert.match(
    viaLink[0].reason,
    new RegExp(`same file as ${path.join(root, 'b', 'img000.png').replace(/[/\\.]/g, '\\$&')} \\(class 'b'\\)`),
  );
  const w = d.warnings.find((x) => /reached under two class folders/.test(x));
  assert.ok(w, d.warnings.join('\n'));
  // It names both paths of each file (the first few), one skipped, one kept.
  const pair = /(\S+) \('(\w+)'\) is (\S+) \('(\w+)'\)/.exec(w);
  assert.ok(pair && pair[2] !== pair[4] && fs.realpathSync(pair[1]) === fs.realpathSync(pair[3]), w);
  assert.ok(d.skipped.some((s) => s.file === pair[1]));
  assert.ok(d.skipped.some((s) => s.file === path.join(root, 'a', 'again.png') && /reached twice/.test(s.reason)));
  assert.deepEqual(d.external, [{ link: path.join(root, 'a', 'ext'), target: fs.realpathSync(outside) }]);
});

test('a class folder that is a link to another class: the linked copy is skipped, the real class keeps its images', async () => {
  const root = newRoot();
  await fill(path.join(root, 'a'), 4, 'png', 0);
  await fill(path.join(root, 'b'), 6, 'png', 50);
  fs.symlinkSync('b', path.join(root, 'c'));
  const d = await scanDataset({ root });
  assert.deepEqual(d.classes, ['a', 'b']);
  assert.equal(d.train.length + d.val.length + d.test.length, 10);
  assert.ok(d.warnings.some((x) => /folder 'c' has no usable images/.test(x)));
  assert.deepEqual(d.external, []);
});
