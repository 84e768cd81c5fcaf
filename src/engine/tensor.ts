// Host-side tensors: plain typed arrays plus a shape. Used by weight loaders, the data
// pipeline and the runtime. Row-major (C order), like PyTorch and ONNX.

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

export type TypedArray =
  Float32Array | Float64Array | Int32Array | BigInt64Array | Int8Array | Uint8Array | Uint16Array;

export interface HostTensor {
  dtype: DType;
  shape: number[];
  /** float16 / bfloat16 are kept as raw Uint16Array bits; bool as Uint8Array. */
  data: TypedArray;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

export function f32(shape: number[], data?: Float32Array | number[]): HostTensor {
  const n = numel(shape);
  const arr = data ? (data instanceof Float32Array ? data : Float32Array.from(data)) : new Float32Array(n);
  if (arr.length !== n) throw new Error(`f32: ${arr.length} values for shape ${shapeStr(shape)}`);
  return { dtype: 'float32', shape, data: arr };
}

/** Converts IEEE half bits to float. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Returns a float32 copy of a floating tensor (float16/bfloat16/float64 are widened or narrowed). */
export function toFloat32(t: HostTensor): HostTensor {
  if (t.dtype === 'float32') return t;
  const n = t.data.length;
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'float16': {
      const u = t.data as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = halfToFloat(u[i]);
      break;
    }
    case 'bfloat16': {
      const u = t.data as Uint16Array;
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u32[i] = u[i] << 16;
      break;
    }
    case 'int64': {
      const b = t.data as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = Number(b[i]);
      break;
    }
    default: {
      const a = t.data as Float64Array | Int32Array | Int8Array | Uint8Array;
      for (let i = 0; i < n; i++) out[i] = a[i];
    }
  }
  return { dtype: 'float32', shape: t.shape.slice(), data: out };
}

/**
 * What kind of user error it is, for code that reacts to one (the extension asks for the head
 * count on 'heads-unknown'): callers branch on the code, never on the message's wording.
 *   heads-unknown      the checkpoint does not record its attention heads (give `heads`)
 *   config-unreadable  a config file cannot be read or is not JSON
 *   config-invalid     a setting has an unknown name or a wrong type or value
 *   setting-missing    a required setting (data, weights) is not given
 *   run-locked         another live process owns the run folder (its run.lock; run/lock.ts)
 *   run-exists         a new run's folder already holds a run (resume it or overwrite it)
 */
export const USER_ERROR_CODES = [
  'heads-unknown',
  'config-unreadable',
  'config-invalid',
  'setting-missing',
  'run-locked',
  'run-exists',
] as const;
export type UserErrorCode = (typeof USER_ERROR_CODES)[number];

/** Error type for user-facing input problems; the CLI prints only the message. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly code?: UserErrorCode,
    /** Numbers the message states, for code that reacts to the error (heads-unknown: width). */
    readonly details?: Record<string, number>,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
