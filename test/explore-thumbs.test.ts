// Thumbnails for the Inspect exits grid (src/engine/explore/thumbs.ts), made by sharp from real
// files: EXIF rotation, longest side `size` (small images scaled up crisply), webp or png, the
// cache reused and renewed when an image changes, unreadable files null with a reason, and a
// folder of many images at a measured rate (MET_THUMBS_N=5000 for the 5,000).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { makeThumbs } from '../src/engine/explore/thumbs';

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'met-thumbs-'));
  process.on('exit', () => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** w x h RGB: left half red, right half blue (so a rotation is visible in the pixels). */
function halves(w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[(y * w + x) * 3 + (x < w / 2 ? 0 : 2)] = 255;
  return px;
}

test('thumbnails: EXIF rotation, longest side, formats, cache reuse and renewal, unreadable files', async () => {
  const dir = tmp();
  const cacheDir = path.join(dir, 'cache');
  const small = path.join(dir, 'small.png');
  await sharp(halves(16, 8), { raw: { width: 16, height: 8, channels: 3 } })
    .png()
    .toFile(small);
  // Stored 40 x 20 with orientation 6 (rotate 90° clockwise to display): shown 20 x 40.
  const rotated = path.join(dir, 'rotated.jpg');
  await sharp(halves(40, 20), { raw: { width: 40, height: 20, channels: 3 } })
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toFile(rotated);
  const big = path.join(dir, 'big.webp');
  await sharp(halves(300, 200), { raw: { width: 300, height: 200, channels: 3 } })
    .webp()
    .toFile(big);
  const bad = path.join(dir, 'bad.jpg');
  fs.writeFileSync(bad, 'not a jpeg');
  const missing = path.join(dir, 'missing.png');

  const files = [small, rotated, bad, big, missing, dir];
  const r = await makeThumbs({ files, size: 64, cacheDir });
  assert.equal(r.thumbs.length, files.length);
  assert.deepEqual(
    r.thumbs.map((t) => t !== null),
    [true, true, false, true, false, false],
  );
  assert.deepEqual(
    r.skipped.map((s) => s.file),
    [bad, missing, dir],
  );
  assert.match(r.skipped[0].reason, /not an image/);
  assert.match(r.skipped[1].reason, /cannot read file/);
  assert.match(r.skipped[2].reason, /is a folder/);

  const meta = async (f: string) => sharp(f).metadata();
  const [ms, mr, mb] = await Promise.all([meta(r.thumbs[0]!), meta(r.thumbs[1]!), meta(r.thumbs[3]!)]);
  assert.deepEqual([ms.format, ms.width, ms.height], ['webp', 64, 32], 'small: scaled up to the longest side');
  assert.deepEqual([mr.width, mr.height], [32, 64], 'rotated: as displayed (portrait)');
  assert.equal(mr.orientation, undefined, 'the rotation is applied, not carried as a tag');
  assert.deepEqual([mb.width, mb.height], [64, 43]);
  // The rotated thumbnail's top half is red, its bottom half blue (orientation 6 turns the
  // stored left (red) half to the top).
  const { data, info } = await sharp(r.thumbs[1]!).raw().toBuffer({ resolveWithObject: true });
  const px = (x: number, y: number) => [
    ...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3),
  ];
  assert.ok(px(16, 8)[0] > 200 && px(16, 8)[2] < 60, `top ${px(16, 8)}`);
  assert.ok(px(16, 56)[2] > 200 && px(16, 56)[0] < 60, `bottom ${px(16, 56)}`);
  // Scaled up with nearest neighbour: still exactly two colours, no blur at the seam.
  const sp = await sharp(r.thumbs[0]!).raw().toBuffer({ resolveWithObject: true });
  const reds = new Set<number>();
  for (let i = 0; i < sp.data.length; i += sp.info.channels) reds.add(sp.data[i] > 128 ? 1 : 0);
  assert.equal(reds.size, 2);

  // Reused: same names, files untouched.
  const mtimes = r.thumbs.map((t) => (t ? fs.statSync(t).mtimeMs : null));
  const again = await makeThumbs({ files, size: 64, cacheDir });
  assert.deepEqual(again.thumbs, r.thumbs);
  assert.deepEqual(
    again.thumbs.map((t) => (t ? fs.statSync(t).mtimeMs : null)),
    mtimes,
  );
  // Another size or format is another thumbnail; an edited image gets a new one.
  const png = await makeThumbs({ files: [small], size: 32, cacheDir, format: 'png' });
  assert.equal((await meta(png.thumbs[0]!)).format, 'png');
  assert.notEqual(png.thumbs[0], r.thumbs[0]);
  await sharp(halves(20, 10), { raw: { width: 20, height: 10, channels: 3 } })
    .png()
    .toFile(small);
  fs.utimesSync(small, new Date(), new Date(Date.now() + 5000));
  const edited = await makeThumbs({ files: [small], size: 64, cacheDir });
  assert.notEqual(edited.thumbs[0], r.thumbs[0]);
  assert.equal(fs.readdirSync(cacheDir).filter((f) => f.includes('.tmp')).length, 0, 'no temporary files left');

  await assert.rejects(makeThumbs({ files: [small], size: 4, cacheDir }), /size must be an integer from 8 to 1024/);
  await assert.rejects(
    makeThumbs({ files: [small], cacheDir, format: 'gif' as never }),
    /format must be 'webp' or 'png'/,
  );
});

test('thumbnails for a large folder: all made, rate measured, the second pass served from the cache', async () => {
  const N = Number(process.env.MET_THUMBS_N ?? 600);
  const dir = tmp();
  const files: string[] = [];
  // Camera-like JPEGs (varied content, 160 x 120) rather than flat colours, which encode to nothing.
  for (let i = 0; i < N; i++) {
    const w = 160;
    const h = 120;
    const px = Buffer.alloc(w * h * 3);
    for (let k = 0; k < px.length; k++) px[k] = (k * (7 + (i % 13)) + i * 31 + ((k / 480) | 0) * 3) & 255;
    const f = path.join(dir, 'img', `${String(i).padStart(5, '0')}.jpg`);
    if (i === 0) fs.mkdirSync(path.dirname(f), { recursive: true });
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 85 })
      .toFile(f);
    files.push(f);
  }
  const cacheDir = path.join(dir, 'cache');
  const t0 = process.hrtime.bigint();
  const r = await makeThumbs({ files, cacheDir });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(r.skipped.length, 0);
  assert.equal(new Set(r.thumbs).size, N);
  const t1 = process.hrtime.bigint();
  const again = await makeThumbs({ files, cacheDir });
  const s2 = Number(process.hrtime.bigint() - t1) / 1e9;
  assert.deepEqual(again.thumbs, r.thumbs);
  console.log(
    `thumbs: ${N} JPEGs 160x120 -> 96 px webp in ${s.toFixed(2)} s (${(N / s).toFixed(0)} images/s); cached pass ${s2.toFixed(2)} s (${(N / s2).toFixed(0)} images/s)`,
  );
  assert.ok(s2 < s, 'the cached pass is faster than making them');
});
