// Image input pipeline (src/engine/data/image.ts). Every image is generated here with sharp
// into a temporary folder, so no binary fixtures are committed.

import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import sharp from 'sharp';
import { UserError } from '../src/engine/tensor';
import { IMAGE_EXTENSIONS, listImageFiles } from '../src/engine/data/files';
import { ImageError, imageInfo, loadBatch, loadImageTensor, type Preprocess } from '../src/engine/data/image';

let dir = '';
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-data-image-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const f = (name: string): string => path.join(dir, name);

/** Raw interleaved 8-bit pixels -> encoded file. */
async function writeRaw(
  name: string,
  pixels: number[] | Uint8Array,
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  fmt: (s: sharp.Sharp) => sharp.Sharp,
): Promise<string> {
  const img = sharp(Buffer.from(pixels), { raw: { width, height, channels } });
  await fmt(img).toFile(f(name));
  return f(name);
}

/** What the pipeline must produce for an 8-bit value: float32 of (v / 255 - m) / s. */
const norm = (v: number, m: number, s: number): number => Math.fround((v / 255 - m) / s);

/** PIL's convert('L') in its fixed point. */
const luma = (r: number, g: number, b: number): number => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;

const gray = (size: number, extra: Partial<Preprocess> = {}): Preprocess => ({
  imageSize: size,
  channels: 1,
  mean: [0.5],
  std: [0.5],
  resize: 'direct',
  ...extra,
});
const rgb = (size: number, extra: Partial<Preprocess> = {}): Preprocess => ({
  imageSize: size,
  channels: 3,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  resize: 'direct',
  ...extra,
});
/** Identity normalisation: output * 255 gives the 8-bit pixel back. */
const raw255 = (size: number, channels: 1 | 3, extra: Partial<Preprocess> = {}): Preprocess => ({
  imageSize: size,
  channels,
  mean: [0],
  std: [1],
  resize: 'direct',
  ...extra,
});

/** Pixel (x, y) of channel c of a [C, S, S] tensor produced with raw255, as 0..255. */
function px(t: Float32Array, size: number, c: number, x: number, y: number): number {
  return Math.round(t[c * size * size + y * size + x] * 255);
}

async function assertImageError(p: Promise<unknown>, file: string, reason: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${String(e)}`);
    assert.ok(e instanceof UserError);
    assert.ok(e.message.includes(file), `message should name the file: ${e.message}`);
    assert.match(e.reason, reason);
    return true;
  });
}

// 4x4 test pattern: a distinct value per pixel and channel.
const P4: number[] = [];
for (let i = 0; i < 16; i++) P4.push((i * 16 + 3) % 256, (i * 37 + 101) % 256, 255 - i * 15);

test('grey 4x4 PNG: exact normalised values, no resampling', async () => {
  const vals = Array.from({ length: 16 }, (_, i) => i * 17);
  const file = await writeRaw('g4.png', vals, 4, 4, 1, (s) => s.png());
  const t = await loadImageTensor(file, gray(4));
  assert.equal(t.length, 16);
  assert.deepEqual(
    [...t],
    vals.map((v) => norm(v, 0.5, 0.5)),
  );
});

test('RGB 4x4 PNG: exact per-channel normalisation in [C, H, W] order', async () => {
  const file = await writeRaw('c4.png', P4, 4, 4, 3, (s) => s.png());
  const p = rgb(4);
  const t = await loadImageTensor(file, p);
  assert.equal(t.length, 3 * 16);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 16; i++) assert.equal(t[c * 16 + i], norm(P4[i * 3 + c], p.mean[c], p.std[c]), `c${c} i${i}`);
  }
  // A single mean/std value applies to every channel.
  const t1 = await loadImageTensor(file, { ...p, mean: [0.5], std: [0.25] });
  for (let c = 0; c < 3; c++) for (let i = 0; i < 16; i++) assert.equal(t1[c * 16 + i], norm(P4[i * 3 + c], 0.5, 0.25));
});

test('RGB -> grey uses the ITU-R 601 luma (PIL convert("L"))', async () => {
  const file = await writeRaw('luma.png', P4, 4, 4, 3, (s) => s.png());
  const t = await loadImageTensor(file, raw255(4, 1));
  for (let i = 0; i < 16; i++) {
    const [r, g, b] = P4.slice(i * 3, i * 3 + 3);
    const v = px(t, 4, 0, i % 4, Math.floor(i / 4));
    assert.equal(v, luma(r, g, b));
    assert.ok(Math.abs(v - (r * 299 + g * 587 + b * 114) / 1000) <= 0.5 + 1e-9);
  }
});

test('grey -> RGB replicates the grey value into all three channels', async () => {
  const vals = Array.from({ length: 16 }, (_, i) => 255 - i * 13);
  const file = await writeRaw('g2rgb.png', vals, 4, 4, 1, (s) => s.png());
  const t = await loadImageTensor(file, raw255(4, 3));
  for (let c = 0; c < 3; c++) for (let i = 0; i < 16; i++) assert.equal(px(t, 4, c, i % 4, i >> 2), vals[i]);
});

test('alpha is dropped and the colour under it kept (PIL convert("RGB")), also for grey + alpha', async () => {
  const file = await writeRaw(
    'alpha.png',
    [200, 10, 10, 0, 20, 30, 40, 128, 1, 2, 3, 255, 90, 91, 92, 7],
    2,
    2,
    4,
    (s) => s.png(),
  );
  const t = await loadImageTensor(file, raw255(2, 3));
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 0, 0)),
    [200, 10, 10],
  );
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 1, 0)),
    [20, 30, 40],
  );
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 1, 1)),
    [90, 91, 92],
  );
  const ga = await writeRaw('greyalpha.png', [10, 0, 250, 255, 77, 3, 0, 0], 2, 2, 2, (s) => s.png());
  const t2 = await loadImageTensor(ga, raw255(2, 1));
  assert.deepEqual([px(t2, 2, 0, 0, 0), px(t2, 2, 0, 1, 0), px(t2, 2, 0, 0, 1), px(t2, 2, 0, 1, 1)], [10, 250, 77, 0]);
});

test('palette PNG is expanded to its colours', async () => {
  const cols = [
    [255, 0, 0],
    [0, 128, 255],
    [10, 200, 30],
    [250, 250, 250],
  ];
  const pixels = Array.from({ length: 16 }, (_, i) => cols[i % 4]).flat();
  const file = await writeRaw('palette.png', pixels, 4, 4, 3, (s) => s.png({ palette: true, colours: 4, dither: 0 }));
  assert.equal((await sharp(file).metadata()).isPalette, true);
  const t = await loadImageTensor(file, raw255(4, 3));
  for (let i = 0; i < 16; i++)
    assert.deepEqual(
      [0, 1, 2].map((c) => px(t, 4, c, i % 4, i >> 2)),
      cols[i % 4],
    );
});

test('EXIF orientation is applied (orientation 6 = rotate 90 degrees clockwise)', async () => {
  // 40x20, left half red, right half blue.
  const w = 40,
    h = 20;
  const pixels = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) pixels.set(x < w / 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
  const file = await writeRaw('exif6.jpg', pixels, w, h, 3, (s) =>
    s.jpeg({ quality: 95 }).withMetadata({ orientation: 6 }),
  );
  const info = await imageInfo(file);
  assert.deepEqual([info.width, info.height], [20, 40], 'displayed size is portrait');
  // Rotating clockwise puts the left (red) half on top. Direct resize 20x40 -> 20x20.
  const t = await loadImageTensor(file, raw255(20, 3));
  assert.equal(t.length, 3 * 20 * 20);
  const isRed = (x: number, y: number): boolean => px(t, 20, 0, x, y) > 200 && px(t, 20, 2, x, y) < 60;
  const isBlue = (x: number, y: number): boolean => px(t, 20, 2, x, y) > 200 && px(t, 20, 0, x, y) < 60;
  for (const x of [0, 10, 19]) {
    assert.ok(isRed(x, 1), `top row red at x=${x}`);
    assert.ok(isBlue(x, 18), `bottom row blue at x=${x}`);
  }
});

test('GIF: the first frame of an animation is used', async () => {
  const frame = (rgbv: number[]): number[] => Array.from({ length: 8 * 6 }, () => rgbv).flat();
  const file = f('anim.gif');
  // pageHeight makes the 8x12 raw buffer two 8x6 frames.
  await sharp(Buffer.from([...frame([255, 0, 0]), ...frame([0, 0, 255])]), {
    raw: { width: 8, height: 12, channels: 3, pageHeight: 6 },
  })
    .gif()
    .toFile(file);
  assert.equal((await imageInfo(file)).pages, 2);
  const t = await loadImageTensor(file, raw255(4, 3));
  for (let i = 0; i < 16; i++)
    assert.deepEqual(
      [0, 1, 2].map((c) => px(t, 4, c, i % 4, i >> 2)),
      [255, 0, 0],
    );
});

test('animated WebP: the first frame is used', async () => {
  const frame = (rgbv: number[]): number[] => Array.from({ length: 8 * 8 }, () => rgbv).flat();
  const file = f('anim.webp');
  await sharp(Buffer.from([...frame([0, 255, 0]), ...frame([255, 0, 255])]), {
    raw: { width: 8, height: 16, channels: 3, pageHeight: 8 },
  })
    .webp({ lossless: true })
    .toFile(file);
  const t = await loadImageTensor(file, raw255(8, 3));
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 8, c, 3, 3)),
    [0, 255, 0],
  );
});

test('TIFF and lossless WebP decode to the exact pixels', async () => {
  for (const [name, fmt] of [
    ['c4.tif', (s: sharp.Sharp) => s.tiff({ compression: 'lzw' })],
    ['c4.tiff', (s: sharp.Sharp) => s.tiff({ compression: 'deflate' })],
    ['c4.webp', (s: sharp.Sharp) => s.webp({ lossless: true })],
  ] as const) {
    const file = await writeRaw(name, P4, 4, 4, 3, fmt);
    const t = await loadImageTensor(file, raw255(4, 3));
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 16; i++) assert.equal(px(t, 4, c, i % 4, i >> 2), P4[i * 3 + c], `${name} c${c} i${i}`);
  }
});

test('AVIF (lossy) decodes to roughly the right colour', async () => {
  const file = f('solid.avif');
  await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 30, b: 30 } } })
    .avif()
    .toFile(file);
  const t = await loadImageTensor(file, raw255(16, 3));
  assert.ok(Math.abs(px(t, 16, 0, 8, 8) - 200) <= 6 && Math.abs(px(t, 16, 1, 8, 8) - 30) <= 6);
});

test('16-bit PNG (RGB and grey) is scaled to 8 bits, not clipped', async () => {
  const rgb16 = f('rgb16.png');
  await sharp(new Uint16Array([65535, 32896, 0, 257, 1000, 40000, 0, 0, 0, 65535, 65535, 65535]), {
    raw: { width: 2, height: 2, channels: 3 },
  })
    .toColourspace('rgb16')
    .png()
    .toFile(rgb16);
  assert.equal((await sharp(rgb16).metadata()).depth, 'ushort');
  const t = await loadImageTensor(rgb16, raw255(2, 3));
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 0, 0)),
    [255, 128, 0],
  );
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 1, 0)),
    [1, 3, 156],
  );
  assert.deepEqual(
    [0, 1, 2].map((c) => px(t, 2, c, 1, 1)),
    [255, 255, 255],
  );

  const g16 = f('grey16.png');
  await sharp(new Uint16Array([65535, 32896, 256, 0]), { raw: { width: 2, height: 2, channels: 1 } })
    .toColourspace('grey16')
    .png()
    .toFile(g16);
  assert.equal((await sharp(g16).metadata()).depth, 'ushort');
  const tg = await loadImageTensor(g16, raw255(2, 1));
  assert.deepEqual([px(tg, 2, 0, 0, 0), px(tg, 2, 0, 1, 0), px(tg, 2, 0, 0, 1), px(tg, 2, 0, 1, 1)], [255, 128, 1, 0]);
});

test('CMYK JPEG is converted to RGB', async () => {
  const file = f('cmyk.jpg');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } })
    .toColourspace('cmyk')
    .jpeg()
    .toFile(file);
  assert.equal((await sharp(file).metadata()).space, 'cmyk');
  const t = await loadImageTensor(file, raw255(8, 3));
  assert.ok(px(t, 8, 0, 4, 4) > 150 && px(t, 8, 1, 4, 4) < 90 && px(t, 8, 2, 4, 4) < 90, 'still red');
});

test('direct resize squashes the whole image; resize-center-crop crops the sides away', async () => {
  // 40x20: a green band in the first 6 columns, grey elsewhere.
  const w = 40,
    h = 20;
  const pixels = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) pixels.set(x < 6 ? [0, 255, 0] : [128, 128, 128], (y * w + x) * 3);
  const file = await writeRaw('band.png', pixels, w, h, 3, (s) => s.png());
  const greenCols = (t: Float32Array, s: number): number => {
    let n = 0;
    for (let x = 0; x < s; x++) if (px(t, s, 1, x, s >> 1) - px(t, s, 0, x, s >> 1) > 60) n++;
    return n;
  };
  const direct = await loadImageTensor(file, raw255(16, 3));
  assert.equal(direct.length, 3 * 16 * 16);
  assert.ok(greenCols(direct, 16) >= 2, 'direct keeps the band (squashed)');
  assert.ok(px(direct, 16, 1, 0, 0) > 200);

  // timm: short side 20 -> floor(16 / 0.875) = 18, long side 36, crop 16 from x = 10: the band is gone.
  const crop = await loadImageTensor(file, raw255(16, 3, { resize: 'resize-center-crop' }));
  assert.equal(crop.length, 3 * 16 * 16);
  assert.equal(greenCols(crop, 16), 0);
  for (const [x, y] of [
    [0, 0],
    [15, 15],
    [8, 8],
  ])
    assert.equal(px(crop, 16, 0, x, y), 128);

  // cropPct 1: resized to 32x16, crop from x = 8 keeps source columns 16..31: still no band.
  const crop1 = await loadImageTensor(file, raw255(16, 3, { resize: 'resize-center-crop', cropPct: 1 }));
  assert.equal(greenCols(crop1, 16), 0);

  // Already-square image at the right size with cropPct 1: pixels are kept exactly.
  const sq = await writeRaw('sq4.png', P4, 4, 4, 3, (s) => s.png());
  const tsq = await loadImageTensor(
    sq,
    raw255(4, 3, { resize: 'resize-center-crop', cropPct: 1, interpolation: 'bicubic' }),
  );
  for (let i = 0; i < 16; i++) assert.equal(px(tsq, 4, 0, i % 4, i >> 2), P4[i * 3]);
});

test('resize-center-crop keeps the centre of a portrait image', async () => {
  // 20x60: red top third, white middle, blue bottom third. Short side 20 -> 18 (size 16), long 54, crop rows 19..34.
  const w = 20,
    h = 60;
  const pixels = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      pixels.set(y < 20 ? [255, 0, 0] : y < 40 ? [255, 255, 255] : [0, 0, 255], (y * w + x) * 3);
  const file = await writeRaw('portrait.png', pixels, w, h, 3, (s) => s.png());
  const t = await loadImageTensor(file, raw255(16, 3, { resize: 'resize-center-crop', interpolation: 'bicubic' }));
  for (const [x, y] of [
    [0, 0],
    [8, 8],
    [15, 15],
  ])
    assert.deepEqual(
      [0, 1, 2].map((c) => px(t, 16, c, x, y)),
      [255, 255, 255],
    );
});

test('a 6000x6000 JPEG loads quickly (shrink-on-load)', async () => {
  const file = f('big.jpg');
  await sharp({ create: { width: 6000, height: 6000, channels: 3, background: { r: 30, g: 160, b: 90 } } })
    .jpeg({ quality: 90 })
    .toFile(file);
  const t0 = Date.now();
  const t = await loadImageTensor(file, raw255(224, 3, { resize: 'resize-center-crop', interpolation: 'bicubic' }));
  const ms = Date.now() - t0;
  assert.equal(t.length, 3 * 224 * 224);
  assert.ok(ms < 5000, `took ${ms} ms`);
  for (const [c, v] of [
    [0, 30],
    [1, 160],
    [2, 90],
  ])
    assert.ok(Math.abs(px(t, 224, c, 100, 100) - v) <= 2);
  const info = await imageInfo(file);
  assert.deepEqual([info.format, info.width, info.height], ['jpeg', 6000, 6000]);
});

test('a text file named .png is an ImageError naming the file', async () => {
  const file = f('cat.png');
  fs.writeFileSync(file, 'this is not an image\n');
  await assertImageError(
    loadImageTensor(file, rgb(8)),
    'cat.png',
    /^not an image \(unsupported or corrupt file: .+\)$/,
  );
});

test('a 0-byte file is an ImageError', async () => {
  const file = f('empty.jpg');
  fs.writeFileSync(file, '');
  await assertImageError(loadImageTensor(file, rgb(8)), 'empty.jpg', /^empty file \(0 bytes\)$/);
});

test('a truncated JPEG is an ImageError, not a partly grey image', async () => {
  const noise = new Uint8Array(200 * 150 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + (i >> 5) * 104729) % 251;
  const whole = await sharp(Buffer.from(noise), { raw: { width: 200, height: 150, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  const file = f('truncated.jpg');
  fs.writeFileSync(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
  await assertImageError(loadImageTensor(file, rgb(8)), 'truncated.jpg', /corrupt|truncated|premature/i);
  // The complete file is fine.
  fs.writeFileSync(f('whole.jpg'), whole);
  await loadImageTensor(f('whole.jpg'), rgb(8));
});

test('missing file, folder, SVG and oversized headers give clear ImageErrors', async () => {
  await assertImageError(loadImageTensor(f('nope.png'), rgb(8)), 'nope.png', /^file not found$/);
  fs.mkdirSync(f('folder.png'));
  await assertImageError(loadImageTensor(f('folder.png'), rgb(8)), 'folder.png', /folder/);
  fs.writeFileSync(
    f('vector.png'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
  );
  await assertImageError(loadImageTensor(f('vector.png'), rgb(8)), 'vector.png', /unsupported image format 'svg'/);
  // A PNG header claiming 20000x20000 pixels (a decompression bomb) is refused before decoding.
  fs.writeFileSync(f('bomb.png'), pngHeaderOnly(20000, 20000));
  await assertImageError(loadImageTensor(f('bomb.png'), rgb(8)), 'bomb.png', /too large/);
});

test('invalid preprocessing settings are UserErrors (not per-file ImageErrors)', async () => {
  const file = await writeRaw('ok.png', P4, 4, 4, 3, (s) => s.png());
  const bad: Partial<Preprocess>[] = [
    { imageSize: 0 },
    { imageSize: 2.5 },
    { std: [0] },
    { mean: [0, 0] },
    { cropPct: 0 },
    { cropPct: 1.5 },
  ];
  for (const b of bad) {
    await assert.rejects(
      loadImageTensor(file, { ...rgb(4), ...b }),
      (e: unknown) => e instanceof UserError && !(e instanceof ImageError),
      JSON.stringify(b),
    );
  }
  await assert.rejects(loadBatch([file], { ...rgb(4), std: [1, 0, 1] }), UserError);
  await assert.rejects(loadBatch([file], rgb(4), 0), UserError);
});

test('non-ASCII file names load', async () => {
  const a = await writeRaw('ñandú.png', P4, 4, 4, 3, (s) => s.png());
  const b = await writeRaw('猫.jpg', P4, 4, 4, 3, (s) => s.jpeg());
  assert.equal((await loadImageTensor(a, raw255(4, 3)))[0], Math.fround(3 / 255));
  assert.equal((await loadImageTensor(b, raw255(4, 3))).length, 48);
  await assertImageError(loadImageTensor(f('ñandú-missing.png'), rgb(8)), 'ñandú-missing.png', /not found/);
});

test('loadBatch decodes in parallel, keeps order, and lists failures without stopping', async () => {
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    files.push(
      await writeRaw(
        `batch${i}.png`,
        P4.map((v) => (v + i * 11) % 256),
        4,
        4,
        3,
        (s) => s.png(),
      ),
    );
  }
  fs.writeFileSync(f('bad1.png'), 'nope');
  fs.writeFileSync(f('bad2.jpg'), '');
  const input = [
    files[0],
    f('bad1.png'),
    files[1],
    files[2],
    f('missing.gif'),
    files[3],
    f('bad2.jpg'),
    files[4],
    files[5],
  ];
  const p = rgb(4);
  const per = 3 * 4 * 4;
  const single = await Promise.all(files.map((x) => loadImageTensor(x, p)));
  for (const conc of [1, 3, 16]) {
    const r = await loadBatch(input, p, conc);
    assert.deepEqual(r.ok, files);
    assert.deepEqual(
      r.failed.map((x) => x.file),
      [f('bad1.png'), f('missing.gif'), f('bad2.jpg')],
    );
    assert.match(r.failed[0].reason, /^not an image/);
    assert.equal(r.failed[1].reason, 'file not found');
    assert.equal(r.failed[2].reason, 'empty file (0 bytes)');
    assert.equal(r.data.length, files.length * per);
    for (let i = 0; i < files.length; i++)
      assert.deepEqual(r.data.subarray(i * per, (i + 1) * per), single[i], `file ${i} conc ${conc}`);
  }
  const empty = await loadBatch([], p);
  assert.deepEqual([empty.data.length, empty.ok.length, empty.failed.length], [0, 0, 0]);
  const allBad = await loadBatch([f('bad1.png')], p);
  assert.deepEqual([allBad.data.length, allBad.ok.length, allBad.failed.length], [0, 0, 1]);
});

test('listImageFiles: recursive, sorted, case-insensitive extensions, hidden skipped, non-ASCII', async () => {
  const root = f('tree');
  const touch = (rel: string): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), 'x');
  };
  for (const rel of [
    'b/x.png',
    'b/deep/z.webp',
    'a.JPG',
    '.hidden/y.png',
    '.h.png',
    'notes.txt',
    'c.TIFF',
    '猫.jpg',
    'ñandú.png',
    'b/.DS_Store',
  ])
    touch(rel);
  const r = await listImageFiles([root]);
  assert.deepEqual(
    r.files.map((x) => path.relative(root, x).split(path.sep).join('/')),
    ['a.JPG', 'b/deep/z.webp', 'b/x.png', 'c.TIFF', 'ñandú.png', '猫.jpg'],
  );
  assert.deepEqual(
    r.skipped.map((x) => path.basename(x.file)),
    ['notes.txt'],
  );
  assert.match(r.skipped[0].reason, /\.txt/);

  // Deterministic: the same call gives the same list.
  assert.deepEqual((await listImageFiles([root])).files, r.files);

  // Single files are kept as given, even with an odd extension; duplicates are dropped.
  touch('odd.dat');
  const r2 = await listImageFiles([path.join(root, 'odd.dat'), root, path.join(root, 'a.JPG')]);
  assert.equal(r2.files[0], path.join(root, 'odd.dat'));
  assert.equal(r2.files.filter((x) => x.endsWith('a.JPG')).length, 1);
  assert.equal(r2.files.length, 7);

  await assert.rejects(
    listImageFiles([root, path.join(root, 'does-not-exist')]),
    (e: unknown) => e instanceof UserError && e.message.includes('does-not-exist'),
  );
});

test('IMAGE_EXTENSIONS lists what sharp can decode (no BMP)', () => {
  for (const e of ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff']) assert.ok(IMAGE_EXTENSIONS.includes(e), e);
  assert.ok(!IMAGE_EXTENSIONS.includes('bmp'));
});

/** A small PNG whose header claims width x height pixels: IHDR, a tiny IDAT, IEND. */
function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (name: string, body: Buffer): Buffer => {
    const type = Buffer.from(name, 'ascii');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length, 0);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([type, body])), 0);
    return Buffer.concat([len, type, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
  const idat = zlib.deflateSync(Buffer.alloc(1000));
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}
