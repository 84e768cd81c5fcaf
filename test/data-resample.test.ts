// Pillow-exact resizing (src/engine/data/resample.ts). Expected values were produced once with
// Pillow 9.4 (Image.resize with BILINEAR / BICUBIC) and pasted here, so the test needs no Python.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { antialiasWeights, type Filter, type Image8, resizePil } from '../src/engine/data/resample';

/** 6x5 RGB test pattern: value (x*37 + y*71 + c*101) mod 256. */
function pattern(): Image8 {
  const w = 6,
    h = 5;
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = (x * 37 + y * 71 + c * 101) % 256;
  return { data, width: w, height: h, channels: 3 };
}

const PIL: Record<string, number[]> = {
  'bilinear 4x3': [
    44, 145, 137, 96, 185, 91, 149, 153, 95, 133, 101, 147, 156, 147, 102, 170, 103, 148, 157, 112, 157, 78, 158, 113,
    121, 113, 159, 100, 165, 107, 117, 169, 75, 169, 123, 115,
  ],
  'bilinear 6x2': [
    71, 160, 98, 108, 139, 135, 133, 176, 91, 170, 108, 116, 149, 145, 153, 81, 101, 132, 132, 128, 159, 169, 107, 115,
    101, 144, 152, 138, 169, 84, 117, 125, 121, 142, 162, 100,
  ],
  'bicubic 4x3': [
    36, 146, 139, 93, 192, 85, 160, 153, 94, 132, 95, 153, 165, 149, 93, 179, 94, 155, 160, 105, 166, 65, 167, 111, 126,
    107, 165, 96, 166, 107, 112, 175, 68, 174, 121, 114,
  ],
  'bicubic 6x2': [
    69, 162, 96, 106, 138, 141, 135, 175, 89, 172, 106, 118, 148, 151, 155, 79, 99, 131, 134, 129, 161, 171, 105, 109,
    102, 142, 154, 139, 171, 85, 115, 119, 122, 144, 164, 98,
  ],
  'bilinear 9x7': [
    0, 101, 202, 19, 120, 221, 43, 144, 202, 68, 169, 57, 93, 194, 39, 117, 218, 63, 142, 243, 88, 167, 140, 113, 185,
    30, 131, 41, 142, 96, 60, 161, 115, 84, 185, 121, 109, 210, 73, 134, 161, 80, 158, 112, 104, 183, 137, 129, 134,
    107, 154, 79, 71, 172, 91, 192, 37, 110, 175, 56, 134, 162, 80, 159, 187, 105, 184, 121, 130, 196, 53, 154, 172, 78,
    179, 94, 103, 168, 20, 121, 149, 142, 243, 88, 161, 134, 107, 185, 30, 131, 210, 55, 156, 235, 80, 181, 216, 104,
    205, 71, 129, 230, 53, 154, 127, 71, 172, 17, 193, 111, 139, 212, 93, 158, 205, 81, 182, 109, 106, 207, 103, 131,
    140, 115, 155, 73, 91, 180, 98, 104, 205, 86, 122, 223, 68, 134, 88, 189, 153, 107, 154, 152, 131, 123, 80, 156,
    148, 80, 181, 100, 104, 187, 50, 129, 139, 75, 154, 146, 100, 172, 164, 118, 28, 129, 230, 47, 148, 121, 71, 172,
    17, 96, 197, 42, 121, 222, 67, 145, 203, 91, 170, 58, 116, 195, 40, 141, 213, 58, 159,
  ],
  'bicubic 9x7': [
    0, 95, 211, 11, 112, 244, 39, 140, 223, 64, 164, 43, 89, 197, 18, 113, 233, 59, 137, 255, 84, 174, 138, 112, 198,
    11, 129, 34, 133, 92, 50, 159, 115, 78, 199, 123, 103, 231, 63, 127, 166, 67, 156, 102, 98, 201, 138, 122, 138, 103,
    160, 78, 60, 186, 89, 202, 17, 106, 182, 33, 135, 172, 64, 166, 210, 103, 197, 117, 135, 210, 22, 163, 192, 56, 191,
    82, 98, 178, 2, 124, 158, 140, 255, 86, 157, 138, 103, 185, 15, 131, 210, 52, 156, 251, 80, 181, 228, 104, 208, 59,
    129, 245, 41, 157, 122, 73, 174, 3, 209, 101, 136, 239, 82, 162, 229, 69, 204, 92, 97, 238, 83, 126, 144, 107, 157,
    50, 79, 196, 88, 99, 227, 78, 124, 243, 58, 134, 74, 200, 161, 100, 157, 160, 138, 121, 63, 162, 158, 58, 194, 95,
    95, 197, 29, 133, 137, 61, 164, 145, 101, 180, 168, 127, 15, 131, 249, 31, 148, 122, 62, 176, 0, 98, 201, 27, 126,
    243, 64, 149, 217, 96, 174, 37, 120, 202, 16, 148, 219, 49, 165,
  ],
};

test('resizePil matches Pillow on a 1-D ramp (upscale and antialiased downscale)', () => {
  const src: Image8 = { data: Uint8Array.from([0, 100, 200, 250]), width: 4, height: 1, channels: 1 };
  assert.deepEqual([...resizePil(src, 8, 1, 'bilinear').data], [0, 25, 75, 125, 175, 213, 238, 250]);
  assert.deepEqual([...resizePil(src, 3, 1, 'bilinear').data], [30, 150, 235]);
  assert.deepEqual([...resizePil(src, 8, 1, 'bicubic').data], [0, 17, 71, 126, 179, 218, 243, 254]);
  assert.deepEqual([...resizePil(src, 3, 1, 'bicubic').data], [19, 152, 243]);
});

test('resizePil matches Pillow on a 2-D RGB pattern (down, up, one axis only)', () => {
  for (const [key, expected] of Object.entries(PIL)) {
    const [filter, size] = key.split(' ') as ['bilinear' | 'bicubic', string];
    const [w, h] = size.split('x').map(Number);
    const out = resizePil(pattern(), w, h, filter);
    assert.equal(out.width, w);
    assert.equal(out.height, h);
    assert.deepEqual([...out.data], expected, key);
  }
});

test('a window of the resized image equals cropping the full result', () => {
  const full = resizePil(pattern(), 9, 7, 'bicubic');
  const win = { left: 2, top: 3, width: 5, height: 3 };
  const part = resizePil(pattern(), 9, 7, 'bicubic', win);
  for (let y = 0; y < win.height; y++) {
    for (let x = 0; x < win.width; x++) {
      for (let c = 0; c < 3; c++) {
        assert.equal(part.data[(y * win.width + x) * 3 + c], full.data[((y + win.top) * 9 + x + win.left) * 3 + c]);
      }
    }
  }
});

test('same size returns the source pixels untouched; a window is a plain crop', () => {
  const src = pattern();
  assert.deepEqual([...resizePil(src, 6, 5, 'bilinear').data], [...src.data]);
  const crop = resizePil(src, 6, 5, 'bicubic', { left: 1, top: 1, width: 2, height: 2 });
  assert.deepEqual([...crop.data], [...src.data.subarray(21, 27), ...src.data.subarray(39, 45)]);
  assert.throws(() => resizePil(src, 6, 5, 'bilinear', { left: 5, top: 0, width: 2, height: 1 }));
});

// PyTorch 1.13's F.interpolate(antialias=True, align_corners=False) along one axis, as the dense
// [out, in] matrix it applies (interpolating each unit vector of the input), float32, rounded to
// 7 digits. PyTorch copies Pillow's antialiased weights, so these are what the position-embedding
// resample (model/vit.ts) must reproduce in floating point.
const TORCH_AA: [filter: Filter, inSize: number, outSize: number, matrix: number[]][] = [
  // prettier-ignore
  ['bicubic', 7, 3, [0.3830645, 0.4395161, 0.2137097, 0.0, -0.032258, -0.0040323, 0.0, -0.030525, 0.045177, 0.2759463, 0.4188034, 0.2759463, 0.045177, -0.030525, 0.0, -0.0040322, -0.032258, 0.0, 0.2137098, 0.4395161, 0.3830644]],
  // prettier-ignore
  ['bicubic', 4, 6, [1.0657893, -0.0657893, 0.0, 0.0, 0.5294118, 0.5294118, -0.0588235, 0.0, -0.0578705, 0.9375001, 0.1319446, -0.0115742, -0.011574, 0.1319443, 0.9375, -0.0578703, 0.0, -0.0588235, 0.5294118, 0.5294118, 0.0, 0.0, -0.0657896, 1.0657896]],
  // prettier-ignore
  ['bicubic', 5, 2, [0.3470952, 0.4156204, 0.2394127, 0.0291551, -0.0312833, -0.0312833, 0.0291551, 0.2394127, 0.4156204, 0.3470952]],
  // prettier-ignore
  ['bilinear', 7, 3, [0.3571429, 0.4285714, 0.2142857, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0588235, 0.2352941, 0.4117647, 0.2352941, 0.0588235, 0.0, 0.0, 0.0, 0.0, 1e-07, 0.2142858, 0.4285714, 0.3571428]],
];

test('antialiasWeights equals the matrix of PyTorch F.interpolate(antialias=True), down and up', () => {
  for (const [filter, inSize, outSize, want] of TORCH_AA) {
    const { ksize, xmin, count, w } = antialiasWeights(inSize, outSize, filter);
    const dense = new Array<number>(outSize * inSize).fill(0);
    for (let o = 0; o < outSize; o++)
      for (let j = 0; j < count[o]; j++) dense[o * inSize + xmin[o] + j] = w[o * ksize + j];
    const err = Math.max(...dense.map((v, i) => Math.abs(v - want[i])));
    assert.ok(err < 1e-6, `${filter} ${inSize}->${outSize}: max |diff| ${err}`);
  }
});
