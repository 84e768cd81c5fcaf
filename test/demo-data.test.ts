// The procedural shapes datasets behind `npm run demo` and the tiny backbone's pretraining
// (src/engine/demo/shapes.ts): deterministic, laid out as class folders, readable by the
// project's own scanner, and with easy samples measurably easier than hard ones.

import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanDataset } from '../src/engine/data/folder';
import { loadImageTensor } from '../src/engine/data/image';
import {
  DEMO_CLASSES,
  fileName,
  MANIFEST,
  PRETRAIN_CLASSES,
  readManifest,
  renderSample,
  writeShapeFolder,
} from '../src/engine/demo/shapes';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'met-demo-data-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the demo and pretraining tasks share no class', () => {
  const pre = new Set<string>(PRETRAIN_CLASSES);
  assert.deepEqual(
    DEMO_CLASSES.filter((c) => pre.has(c)),
    [],
  );
  assert.equal(new Set(DEMO_CLASSES).size, DEMO_CLASSES.length);
  assert.equal(pre.size, PRETRAIN_CLASSES.length);
});

test('an image is a pure function of (seed, class, index)', () => {
  for (const cls of [...DEMO_CLASSES, ...PRETRAIN_CLASSES]) {
    const a = renderSample(cls, 7, 3);
    const b = renderSample(cls, 7, 3);
    assert.deepEqual(a.pixels, b.pixels, cls);
    assert.deepEqual(a.info, b.info, cls);
    assert.notDeepEqual(renderSample(cls, 8, 3).pixels, a.pixels, `${cls}: another seed draws another image`);
    assert.notDeepEqual(renderSample(cls, 7, 4).pixels, a.pixels, `${cls}: another index draws another image`);
    assert.equal(a.pixels.length, 32 * 32 * 3);
  }
  assert.throws(() => renderSample('no-such-shape', 0, 0), /unknown shape class/);
});

/** |mean luma inside the shape - mean luma of the background|, and the background's luma spread. */
function measured(pixels: Uint8Array, mask: Float32Array): { contrast: number; snr: number } {
  let inS = 0,
    inN = 0,
    outS = 0,
    outN = 0;
  const luma = (i: number) => (0.299 * pixels[i * 3] + 0.587 * pixels[i * 3 + 1] + 0.114 * pixels[i * 3 + 2]) / 255;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] >= 1) {
      inS += luma(i);
      inN++;
    } else if (mask[i] === 0) {
      outS += luma(i);
      outN++;
    }
  }
  const outMean = outS / outN;
  let v = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] === 0) v += (luma(i) - outMean) ** 2;
  const contrast = Math.abs(inS / inN - outMean);
  return { contrast, snr: contrast / Math.sqrt(v / outN) };
}

test('easy samples are larger and have more contrast and less noise than hard ones', () => {
  const easy = { contrast: 0, snr: 0, radius: 0, n: 0 };
  const hard = { contrast: 0, snr: 0, radius: 0, n: 0 };
  for (const cls of ['circle', 'square', 'triangle']) {
    for (let i = 0; i < 40; i++) {
      const r = renderSample(cls, 1, i);
      const m = measured(r.pixels, r.mask);
      const acc = r.info.hard ? hard : easy;
      acc.contrast += m.contrast;
      acc.snr += m.snr;
      acc.radius += r.info.radius;
      acc.n++;
      assert.equal(r.info.hard, r.info.level >= 0.7, 'hard samples are the ones at level >= 0.7');
      if (!r.info.hard) assert.equal(r.info.distractors, 0, 'easy samples have no distractors');
    }
  }
  assert.ok(easy.n >= 30 && hard.n >= 30, `both kinds are drawn (easy ${easy.n}, hard ${hard.n})`);
  for (const a of [easy, hard]) {
    a.contrast /= a.n;
    a.snr /= a.n;
    a.radius /= a.n;
  }
  assert.ok(
    easy.contrast > 1.6 * hard.contrast,
    `measured contrast: easy ${easy.contrast.toFixed(3)}, hard ${hard.contrast.toFixed(3)}`,
  );
  assert.ok(easy.snr > 4 * hard.snr, `contrast-to-noise: easy ${easy.snr.toFixed(1)}, hard ${hard.snr.toFixed(1)}`);
  assert.ok(easy.radius > hard.radius + 3, `radius: easy ${easy.radius.toFixed(1)}, hard ${hard.radius.toFixed(1)}`);
});

test('a generated folder has one folder per class, is reproducible and loads through scanDataset', async () => {
  const opts = { classes: DEMO_CLASSES, perClass: 5, seed: 3 };
  const a = path.join(tmp, 'a');
  const b = path.join(tmp, 'b');
  const ra = await writeShapeFolder({ out: a, ...opts });
  assert.equal(ra.reused, false);
  assert.equal((await writeShapeFolder({ out: a, ...opts })).reused, true, 'same options: the folder is reused');
  await writeShapeFolder({ out: b, ...opts });

  assert.deepEqual(
    fs
      .readdirSync(a)
      .filter((f) => !f.startsWith('.'))
      .sort(),
    [...DEMO_CLASSES].sort(),
  );
  for (const cls of DEMO_CLASSES) {
    const files = fs.readdirSync(path.join(a, cls)).sort();
    assert.deepEqual(
      files,
      [0, 1, 2, 3, 4].map((i) => fileName(i, 'png')),
      cls,
    );
    for (const f of files)
      assert.ok(
        fs.readFileSync(path.join(a, cls, f)).equals(fs.readFileSync(path.join(b, cls, f))),
        `${cls}/${f}: same bytes`,
      );
  }
  const other = path.join(tmp, 'not-generated');
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, 'keep.txt'), 'mine');
  await assert.rejects(writeShapeFolder({ out: other, ...opts }), /not made by the shapes generator/);
  assert.ok(fs.existsSync(path.join(other, 'keep.txt')), 'a folder the generator did not make is left alone');

  const m = readManifest(a)!;
  assert.equal(m.samples.length, DEMO_CLASSES.length * 5);
  assert.ok(m.samples.every((s) => fs.existsSync(path.join(a, s.file))));

  const ds = await scanDataset({ root: a });
  assert.equal(ds.layout, 'class-folders');
  assert.deepEqual(ds.classes, [...DEMO_CLASSES].sort());
  assert.equal(ds.train.length + ds.val.length + ds.test.length, DEMO_CLASSES.length * 5);
  assert.deepEqual(ds.skipped, [], `the hidden ${MANIFEST} is not a skipped file`);
  assert.deepEqual(ds.warnings, []);

  // PNG is lossless: the network sees exactly the rendered pixels (what pretraining feeds in memory).
  const r = renderSample('ring', 3, 2);
  const x = await loadImageTensor(path.join(a, 'ring', fileName(2, 'png')), {
    imageSize: 32,
    channels: 3,
    mean: [0.5],
    std: [0.5],
    resize: 'direct',
  });
  const plane = 32 * 32;
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(x[c * plane + i] - (r.pixels[i * 3 + c] / 255 - 0.5) / 0.5) < 1e-6);
});
