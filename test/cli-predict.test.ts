// `met predict` end to end, as a user runs it: a child process, real image files decoded by
// sharp, real checkpoints (the committed torchvision fixture), exit codes and messages.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';

const ROOT = path.resolve(__dirname, '..');
const FIX = path.join(ROOT, 'test', 'fixtures');

function met(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'met.js'), ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'met-cli-'));
}

async function writeImages(dir: string, n: number, size: number): Promise<string[]> {
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(size * size * 3);
    for (let k = 0; k < px.length; k++) px[k] = (k * (7 + i) + i * 31) % 256;
    const f = path.join(dir, `img${i}.png`);
    await sharp(px, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toFile(f);
    files.push(f);
  }
  return files;
}

test('met predict --json prints top-K per image for a torchvision checkpoint', async () => {
  const dir = tmpdir();
  await writeImages(dir, 3, 32);
  const r = met([
    'predict',
    '--weights',
    path.join(FIX, 'tv_a.safetensors'),
    '--heads',
    '3',
    '--top',
    '2',
    '--json',
    dir,
  ]);
  assert.equal(r.code, 0, r.err);
  const res = JSON.parse(r.out) as { file: string; topk: { class: number; prob: number }[] }[];
  assert.equal(res.length, 3);
  for (const x of res) {
    assert.equal(x.topk.length, 2);
    assert.ok(x.topk[0].prob >= x.topk[1].prob);
    assert.ok(Number.isInteger(x.topk[0].class) && x.topk[0].class >= 0 && x.topk[0].class < 5);
  }
  // The same checkpoint as .pth gives the same answers.
  const r2 = met(['predict', '--weights', path.join(FIX, 'tv_a.pth'), '--heads', '3', '--top', '2', '--json', dir]);
  assert.equal(r2.code, 0, r2.err);
  const res2 = JSON.parse(r2.out) as typeof res;
  res.forEach((x, i) => {
    assert.equal(x.topk[0].class, res2[i].topk[0].class);
    assert.ok(Math.abs(x.topk[0].prob - res2[i].topk[0].prob) < 1e-6);
  });
});

test('met predict: a non-image file passed as an image names the file, exits non-zero', async () => {
  const dir = tmpdir();
  const [good] = await writeImages(dir, 1, 32);
  const bad = path.join(dir, 'notes.png');
  fs.writeFileSync(bad, 'this is not a PNG\n');
  const r = met(['predict', '--weights', path.join(FIX, 'tv_a.safetensors'), '--heads', '3', '--json', good, bad]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /notes\.png/);
  // The good image is still scored.
  assert.equal((JSON.parse(r.out) as unknown[]).length, 1);
});

test('met predict: bad weights give a clear error naming the file', () => {
  const dir = tmpdir();
  const trunc = path.join(dir, 'cut.safetensors');
  const full = fs.readFileSync(path.join(FIX, 'tv_a.safetensors'));
  fs.writeFileSync(trunc, full.subarray(0, full.length - 100));
  const r = met(['predict', '--weights', trunc, '--heads', '3', path.join(dir)]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /cut\.safetensors/);

  const missing = met(['predict', '--weights', path.join(dir, 'nope.pth'), dir]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.err, /nope\.pth/);
});

test('met predict: unknown flag and wrong channel count are errors that name the flag', () => {
  const r = met(['predict', '--wieghts', 'x']);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /--wieghts/);
  const r2 = met(['predict', '--weights', path.join(FIX, 'tv_a.safetensors'), '--heads', '3', '--channels', '1', FIX]);
  assert.notEqual(r2.code, 0);
  assert.match(r2.err, /channels/);
});
