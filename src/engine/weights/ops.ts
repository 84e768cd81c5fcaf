// Small shape operations on host tensors, used by the readers (strided views, Fortran order) and
// by the layout converters (transposes, reshapes, concatenation). All return fresh C-order copies.

import { type HostTensor, type TypedArray, numel, shapeStr } from '../tensor';
import { allocTyped } from './safetensors';

/** Thrown by converters when a source tensor's shape does not fit the transform; the caller records it as a mis-shape. */
export class ShapeError extends Error {
  constructor(
    readonly found: number[],
    message: string,
  ) {
    super(message);
    this.name = 'ShapeError';
  }
}

function isContiguous(size: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) return false;
    expected *= size[d];
  }
  return true;
}

/**
 * Copies the strided view (offset, size, stride) of `src` into `dst` in C order.
 * `src` and `dst` must be the same kind of typed array; bounds are the caller's to check.
 */
export function copyStridedView(
  src: TypedArray,
  offset: number,
  size: readonly number[],
  stride: readonly number[],
  dst: TypedArray,
): void {
  const n = numel(size);
  if (n === 0) return;
  if (isContiguous(size, stride)) {
    (dst as Float32Array).set((src as Float32Array).subarray(offset, offset + n));
    return;
  }
  // Element-wise copy; the casts only let TS index both arrays (number or bigint elements alike).
  const s = src as unknown as Record<number, number>;
  const d = dst as unknown as Record<number, number>;
  const nd = size.length;
  const idx = new Array<number>(nd).fill(0);
  let at = offset;
  for (let i = 0; i < n; i++) {
    d[i] = s[at];
    // Odometer increment over the index, last dimension fastest.
    for (let k = nd - 1; k >= 0; k--) {
      idx[k]++;
      at += stride[k];
      if (idx[k] < size[k]) break;
      at -= stride[k] * size[k];
      idx[k] = 0;
    }
  }
}

/** C-order strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** out[i0..ik] = t[i_axes^-1...]: numpy's transpose(t, axes). */
export function permute(t: HostTensor, axes: readonly number[]): HostTensor {
  if (axes.length !== t.shape.length)
    throw new ShapeError(t.shape, `permute ${shapeStr(axes)} of a rank-${t.shape.length} tensor`);
  const inStrides = stridesOf(t.shape);
  const shape = axes.map((a) => t.shape[a]);
  const stride = axes.map((a) => inStrides[a]);
  const data = allocTyped(t.dtype, t.data.length);
  copyStridedView(t.data, 0, shape, stride, data);
  return { dtype: t.dtype, shape, data };
}

export function transpose2d(t: HostTensor): HostTensor {
  if (t.shape.length !== 2) throw new ShapeError(t.shape, `expected a matrix, found ${shapeStr(t.shape)}`);
  return permute(t, [1, 0]);
}

/** Same data, new shape (numel must agree). Shares the data array. */
export function reshape(t: HostTensor, shape: number[]): HostTensor {
  if (numel(shape) !== t.data.length)
    throw new ShapeError(t.shape, `cannot reshape ${shapeStr(t.shape)} to ${shapeStr(shape)}`);
  return { dtype: t.dtype, shape, data: t.data };
}

/** Concatenates along the first axis; all other dimensions must agree. Inputs must share a dtype. */
export function concat0(ts: readonly HostTensor[]): HostTensor {
  const first = ts[0];
  for (const t of ts) {
    if (
      t.dtype !== first.dtype ||
      t.shape.length !== first.shape.length ||
      t.shape.some((d, i) => i > 0 && d !== first.shape[i])
    ) {
      throw new ShapeError(t.shape, `cannot stack ${ts.map((x) => shapeStr(x.shape)).join(', ')}`);
    }
  }
  const shape = [ts.reduce((a, t) => a + t.shape[0], 0), ...first.shape.slice(1)];
  const data = allocTyped(first.dtype, numel(shape));
  let at = 0;
  for (const t of ts) {
    (data as Float32Array).set(t.data as Float32Array, at);
    at += t.data.length;
  }
  return { dtype: first.dtype, shape, data };
}
