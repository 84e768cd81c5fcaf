// Pillow's convolution resampler (libImaging/Resample.c, Pillow 7+), re-implemented so that
// resizing gives the same 8-bit pixels as torchvision/timm transforms on PIL images, which is
// what ViT checkpoints were trained and evaluated with. libvips (sharp) is not a substitute:
// its upsampling maps output pixel i to input i/scale - 0.5 instead of the centre convention
// (i + 0.5)/scale - 0.5, a half-output-pixel shift that shows up clearly when small images
// (CIFAR 32x32, MNIST 28x28) are enlarged to 224.
//
// Separable: horizontal pass into 8-bit, then vertical pass, each with antialiased kernels
// (support widened by the downscale factor) and 22-bit fixed-point coefficients, exactly as
// Pillow does, including its rounding.

export type Filter = 'bilinear' | 'bicubic';

interface Kernel {
  support: number;
  fn: (x: number) => number;
}

const KERNELS: Record<Filter, Kernel> = {
  bilinear: {
    support: 1,
    fn: (x) => {
      if (x < 0) x = -x;
      return x < 1 ? 1 - x : 0;
    },
  },
  // Keys cubic with a = -0.5 (Catmull-Rom), Pillow's BICUBIC.
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      if (x < 0) x = -x;
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

// Pillow: PRECISION_BITS = 32 - 8 - 2, leaving headroom so sums of 8-bit * coefficient fit int32.
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coeffs {
  /** Taps per output pixel (row stride of `k`). */
  ksize: number;
  /** First input index per output pixel. */
  xmin: Int32Array;
  /** Number of taps used per output pixel. */
  count: Int32Array;
  /** Fixed-point weights, [outSize, ksize]. */
  k: Int32Array;
}

/**
 * Antialiased resampling weights along one axis, in floating point: Pillow's precompute_coeffs,
 * which PyTorch's F.interpolate(antialias=True) copies (_compute_weights_aa in
 * aten/src/ATen/native/cpu/UpSampleKernel.cpp, align_corners=False). When downsampling by s the
 * kernel is stretched by s (support `kernel.support * s`, argument divided by s), so every input
 * sample contributes; taps past the edges are dropped and the rest renormalised to sum 1.
 * Output i reads inputs [xmin[i], xmin[i] + count[i]) with weights w[i * ksize + j].
 */
export function antialiasWeights(
  inSize: number,
  outSize: number,
  filter: Filter,
): { ksize: number; xmin: Int32Array; count: Int32Array; w: Float64Array } {
  const kernel = KERNELS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = kernel.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const xmin = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const out = new Float64Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; Math.trunc keeps that for negative values too.
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = hi - lo;
    const w = out.subarray(xx * ksize, xx * ksize + n);
    let ww = 0;
    for (let x = 0; x < n; x++) {
      w[x] = kernel.fn((x + lo - center + 0.5) * ss);
      ww += w[x];
    }
    if (ww !== 0) for (let x = 0; x < n; x++) w[x] /= ww;
    xmin[xx] = lo;
    count[xx] = n;
  }
  return { ksize, xmin, count, w: out };
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-image box. */
function coeffs(inSize: number, outSize: number, filter: Filter): Coeffs {
  const { ksize, xmin, count, w } = antialiasWeights(inSize, outSize, filter);
  const k = new Int32Array(outSize * ksize);
  for (let i = 0; i < k.length; i++) {
    const v = w[i] * (1 << PRECISION_BITS);
    k[i] = Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
  }
  return { ksize, xmin, count, k };
}

function clip8(ss: number): number {
  // ss fits int32 (Pillow's invariant), so >> is its arithmetic shift.
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** An interleaved 8-bit image: pixel (x, y), channel c at data[(y * width + x) * channels + c]. */
export interface Image8 {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** Output window of the resized image (a crop of it), so crops do not pay for discarded pixels. */
export interface Window {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Resizes `src` to outW x outH exactly as Pillow's Image.resize(size, BILINEAR|BICUBIC) would
 * and returns the `win` part of the result (default: all of it). Output pixels do not depend
 * on which window is requested, so resize-then-crop equals Pillow's resize followed by crop.
 */
export function resizePil(src: Image8, outW: number, outH: number, filter: Filter, win?: Window): Image8 {
  const C = src.channels;
  const w = win ?? { left: 0, top: 0, width: outW, height: outH };
  if (w.left < 0 || w.top < 0 || w.left + w.width > outW || w.top + w.height > outH) {
    throw new Error(`resizePil: window ${w.left},${w.top} ${w.width}x${w.height} outside ${outW}x${outH}`);
  }
  const needH = outW !== src.width;
  const needV = outH !== src.height;

  // Rows of the source the vertical pass will read (all needed rows when there is none).
  let vc: Coeffs | null = null;
  let rowFirst = w.top;
  let rowLast = w.top + w.height;
  if (needV) {
    vc = coeffs(src.height, outH, filter);
    rowFirst = vc.xmin[w.top];
    rowLast = vc.xmin[w.top + w.height - 1] + vc.count[w.top + w.height - 1];
  }

  // Horizontal pass: rows [rowFirst, rowLast), output columns of the window only.
  let mid: Image8;
  if (needH) {
    const hc = coeffs(src.width, outW, filter);
    const rows = rowLast - rowFirst;
    const out = new Uint8Array(rows * w.width * C);
    const sd = src.data;
    for (let y = 0; y < rows; y++) {
      const rowOff = (y + rowFirst) * src.width * C;
      for (let xo = 0; xo < w.width; xo++) {
        const xx = w.left + xo;
        const kOff = xx * hc.ksize;
        const n = hc.count[xx];
        const base = rowOff + hc.xmin[xx] * C;
        const dst = (y * w.width + xo) * C;
        for (let c = 0; c < C; c++) {
          let ss = HALF;
          for (let x = 0; x < n; x++) ss += sd[base + x * C + c] * hc.k[kOff + x];
          out[dst + c] = clip8(ss);
        }
      }
    }
    mid = { data: out, width: w.width, height: rows, channels: C };
  } else {
    // Columns are used as they are; cut out the window's columns and the needed rows.
    const rows = rowLast - rowFirst;
    const out = new Uint8Array(rows * w.width * C);
    for (let y = 0; y < rows; y++) {
      const from = ((y + rowFirst) * src.width + w.left) * C;
      out.set(src.data.subarray(from, from + w.width * C), y * w.width * C);
    }
    mid = { data: out, width: w.width, height: rows, channels: C };
  }
  if (!vc) return mid;

  // Vertical pass over the intermediate rows (which start at source row rowFirst).
  const out = new Uint8Array(w.height * w.width * C);
  const md = mid.data;
  const rowLen = w.width * C;
  for (let yo = 0; yo < w.height; yo++) {
    const yy = w.top + yo;
    const kOff = yy * vc.ksize;
    const n = vc.count[yy];
    const first = vc.xmin[yy] - rowFirst;
    const dstRow = yo * rowLen;
    for (let i = 0; i < rowLen; i++) {
      let ss = HALF;
      for (let y = 0; y < n; y++) ss += md[(first + y) * rowLen + i] * vc.k[kOff + y];
      out[dstRow + i] = clip8(ss);
    }
  }
  return { data: out, width: w.width, height: w.height, channels: C };
}
