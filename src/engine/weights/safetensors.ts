// safetensors reader and writer (https://github.com/huggingface/safetensors).
//
// The format, as this reader enforces it:
//
//   bytes [0, 8)        N, the header length, an unsigned 64-bit little-endian integer
//   bytes [8, 8+N)      the header: UTF-8 JSON object (the reference writer pads it with
//                       spaces so that 8+N is a multiple of 8)
//   bytes [8+N, end)    the data section: raw little-endian tensor bytes
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
// with b and e relative to the start of the data section. The optional key "__metadata__" maps
// to a flat object of string -> string (free-form, e.g. {"format": "pt"}).
//
// Checks (a file that fails any is rejected with an error naming the file and tensor):
//   - N fits in the file, and the header is a JSON object;
//   - every dtype is one we know, every shape a list of non-negative integers;
//   - e - b == numel(shape) * itemsize(dtype);
//   - every [b, e) lies inside the data section, and no two tensors overlap.
// Gaps between tensors and trailing bytes are tolerated (the reference implementation is stricter
// and requires the tensors to tile the data section exactly; neither gaps nor trailing bytes can
// make us read the wrong bytes, so we do not refuse files for them).

import * as fs from 'fs';
import * as os from 'os';
import { type DType, type HostTensor, type TypedArray, UserError, numel, shapeStr } from '../tensor';
import { writeFileAtomic } from '../io/atomic';

interface DTypeInfo {
  dtype: DType;
  itemsize: number;
}

/** safetensors dtype codes this project reads and writes. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, DTypeInfo>> = {
  F64: { dtype: 'float64', itemsize: 8 },
  F32: { dtype: 'float32', itemsize: 4 },
  F16: { dtype: 'float16', itemsize: 2 },
  BF16: { dtype: 'bfloat16', itemsize: 2 },
  I64: { dtype: 'int64', itemsize: 8 },
  I32: { dtype: 'int32', itemsize: 4 },
  I8: { dtype: 'int8', itemsize: 1 },
  U8: { dtype: 'uint8', itemsize: 1 },
  BOOL: { dtype: 'bool', itemsize: 1 },
};

const CODE_BY_DTYPE: Record<DType, string> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

/** The reference implementation refuses headers above 100 MB; so do we (a lying length must not make us allocate gigabytes). */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsFile {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string> | undefined;
}

/** Byte size of one element of a host dtype. */
export function itemsizeOf(dtype: DType): number {
  return SAFETENSORS_DTYPES[CODE_BY_DTYPE[dtype]].itemsize;
}

/** Allocates a typed array of the host representation of `dtype` (float16/bfloat16 as raw Uint16 bits, bool as Uint8). */
export function allocTyped(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float64':
      return new Float64Array(n);
    case 'float32':
      return new Float32Array(n);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(n);
  }
}

/**
 * Copies little-endian bytes into a fresh typed array. Always copies: slices of a file buffer are
 * generally not aligned to the element size, and a view would pin the whole file in memory.
 */
export function typedFromBytes(dtype: DType, bytes: Uint8Array, n: number): TypedArray {
  assertLittleEndianHost();
  const out = allocTyped(dtype, n);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes.subarray(0, out.byteLength));
  return out;
}

let hostChecked = false;
/** Typed arrays use the host byte order and every format here is little-endian; all platforms VS Code runs on are. */
export function assertLittleEndianHost(): void {
  if (hostChecked) return;
  if (os.endianness() !== 'LE') throw new Error('weights: big-endian hosts are not supported');
  hostChecked = true;
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Parses a safetensors file held in memory. `name` (usually the path) prefixes every error message. */
export function decodeSafetensorsFile(buf: Uint8Array, name: string): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new UserError(`${name}: ${msg}`);
  };
  if (buf.length < 8)
    fail(`not a safetensors file: ${buf.length} bytes, shorter than the 8-byte header length (truncated?)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 > BigInt(buf.length - 8)) {
    fail(
      `safetensors header length ${headerLen64} exceeds the ${buf.length - 8} bytes after it (truncated or not a safetensors file)`,
    );
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES)
    fail(`safetensors header of ${headerLen} bytes is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  if (headerLen < 2) fail(`safetensors header of ${headerLen} bytes cannot hold a JSON object`);

  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, headerLen).toString('utf8'));
  } catch (e) {
    fail(`safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('safetensors header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  let metadata: Record<string, string> | undefined;
  const entries: { key: string; info: DTypeInfo; shape: number[]; begin: number; end: number }[] = [];

  for (const [key, raw] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('"__metadata__" is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`"__metadata__" entry '${k}' is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const where = `tensor '${key}'`;
    if (typeof raw !== 'object' || raw === null) fail(`${where}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string') fail(`${where}: missing dtype`);
    const info = SAFETENSORS_DTYPES[dtype as string];
    if (!info) {
      fail(`${where} has unknown dtype '${String(dtype)}' (supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt))
      fail(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      fail(`${where}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets as number[];
    const shp = shape as number[];
    if (end < begin) fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen) {
      fail(
        `${where}: data_offsets [${begin}, ${end}] lie beyond the end of the data section (${dataLen} bytes; truncated file?)`,
      );
    }
    const want = numel(shp) * info.itemsize;
    if (end - begin !== want) {
      fail(
        `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} ${shapeStr(shp)} needs ${want}`,
      );
    }
    entries.push({ key, info, shape: shp, begin, end });
  }

  // Overlap check: sorted by start, each tensor must begin at or after the previous one ends.
  // Zero-byte tensors occupy nothing and cannot overlap.
  const sorted = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.begin < prev.end) {
      fail(
        `tensor '${cur.key}' data_offsets [${cur.begin}, ${cur.end}] overlap tensor '${prev.key}' [${prev.begin}, ${prev.end}]`,
      );
    }
  }

  const tensors = new Map<string, HostTensor>();
  for (const e of entries) {
    const bytes = buf.subarray(dataStart + e.begin, dataStart + e.end);
    tensors.set(e.key, {
      dtype: e.info.dtype,
      shape: e.shape,
      data: typedFromBytes(e.info.dtype, bytes, numel(e.shape)),
    });
  }
  return { tensors, metadata };
}

/** Parses a safetensors file held in memory and returns its tensors in header order. */
export function decodeSafetensors(buf: Uint8Array, name: string): Map<string, HostTensor> {
  return decodeSafetensorsFile(buf, name).tensors;
}

/** Reads a .safetensors file from disk. */
export function readSafetensors(file: string): Map<string, HostTensor> {
  return decodeSafetensors(readFileOrThrow(file), file);
}

/** Reads a .safetensors file from disk, with its `__metadata__`. */
export function readSafetensorsFile(file: string): SafetensorsFile {
  return decodeSafetensorsFile(readFileOrThrow(file), file);
}

/** Reads a whole file, turning the usual OS failures into UserErrors that name the file. */
export function readFileOrThrow(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${file}: file not found`);
    if (code === 'EISDIR') throw new UserError(`${file}: is a directory, not a weights file`);
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`${file}: permission denied`);
    throw new UserError(`${file}: cannot read (${(e as Error).message})`);
  }
}

const ARRAY_OK: Record<DType, (a: TypedArray) => boolean> = {
  float64: (a) => a instanceof Float64Array,
  float32: (a) => a instanceof Float32Array,
  float16: (a) => a instanceof Uint16Array,
  bfloat16: (a) => a instanceof Uint16Array,
  int64: (a) => a instanceof BigInt64Array,
  int32: (a) => a instanceof Int32Array,
  int8: (a) => a instanceof Int8Array,
  uint8: (a) => a instanceof Uint8Array,
  bool: (a) => a instanceof Uint8Array,
};

export type TensorDict = Map<string, HostTensor> | Record<string, HostTensor>;

/**
 * Serialises tensors to safetensors bytes. Like the reference writer, the data is ordered by
 * decreasing item size (stable, so names keep their given order within one size): with the header
 * padded to a multiple of 8, every tensor then starts at an offset aligned to its own item size,
 * which lets readers map the data zero-copy.
 */
export function encodeSafetensors(tensors: TensorDict, metadata?: Record<string, string>): Buffer {
  assertLittleEndianHost();
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [key, t] of list) {
    if (key === '__metadata__')
      throw new Error(`encodeSafetensors: '__metadata__' is reserved and cannot name a tensor`);
    if (!ARRAY_OK[t.dtype]?.(t.data))
      throw new Error(`encodeSafetensors: tensor '${key}' of dtype ${t.dtype} holds a ${t.data.constructor.name}`);
    if (t.data.length !== numel(t.shape)) {
      throw new Error(`encodeSafetensors: tensor '${key}' has ${t.data.length} values for shape ${shapeStr(t.shape)}`);
    }
  }
  const order = list
    .map((entry, i) => ({ entry, i }))
    .sort((a, b) => itemsizeOf(b.entry[1].dtype) - itemsizeOf(a.entry[1].dtype) || a.i - b.i)
    .map((x) => x.entry);

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [key, t] of order) {
    const size = t.data.byteLength;
    header[key] = { dtype: CODE_BY_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);

  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const [, t] of order) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/**
 * Writes a safetensors file atomically: the bytes go to `<path>.tmp-<pid>`, are flushed to disk,
 * and the temporary file is then renamed over `path`, so a crash never leaves a half-written
 * checkpoint under the real name.
 */
export function writeSafetensors(file: string, tensors: TensorDict, metadata?: Record<string, string>): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
