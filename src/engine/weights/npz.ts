// numpy .npz archives (np.savez / np.savez_compressed): a zip of `<name>.npy` files, stored or
// deflated. Google's ViT checkpoints ship this way, with names such as
// 'Transformer/encoderblock_0/LayerNorm_0/scale'.
//
// .npy format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   "\x93NUMPY", major, minor version bytes
//   header length: uint16 LE (v1) or uint32 LE (v2, v3)
//   header: a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
//           (latin-1 in v1/v2, UTF-8 in v3), padded with spaces and a newline
//   data: numel * itemsize bytes, C order unless fortran_order
// Object arrays ('|O') are pickles inside the .npy and are refused.

import { type DType, type HostTensor, type TypedArray, UserError, numel, shapeStr } from '../tensor';
import { copyStridedView, stridesOf } from './ops';
import { allocTyped, readFileOrThrow, typedFromBytes } from './safetensors';
import { ZipArchive, looksLikeZip } from './zip';

const NPY_MAGIC = '\x93NUMPY';

/** numpy type code (kind + itemsize, without the byte-order character) -> host dtype. i2/u2 are widened to int32. */
const NPY_TYPES: Record<string, { dtype: DType; itemsize: number; widen?: 'i2' | 'u2' }> = {
  f8: { dtype: 'float64', itemsize: 8 },
  f4: { dtype: 'float32', itemsize: 4 },
  f2: { dtype: 'float16', itemsize: 2 },
  i8: { dtype: 'int64', itemsize: 8 },
  i4: { dtype: 'int32', itemsize: 4 },
  i2: { dtype: 'int32', itemsize: 2, widen: 'i2' },
  u2: { dtype: 'int32', itemsize: 2, widen: 'u2' },
  i1: { dtype: 'int8', itemsize: 1 },
  u1: { dtype: 'uint8', itemsize: 1 },
  b1: { dtype: 'bool', itemsize: 1 },
};

export function looksLikeNpy(buf: Uint8Array): boolean {
  return buf.length >= 6 && Buffer.from(buf.buffer, buf.byteOffset, 6).toString('latin1') === NPY_MAGIC;
}

/** Parses one .npy file. `name` prefixes errors (e.g. "ViT-B_16.npz: 'cls'"). */
export function decodeNpy(buf: Buffer, name: string): HostTensor {
  const fail = (msg: string): never => {
    throw new UserError(`${name}: ${msg}`);
  };
  if (!looksLikeNpy(buf)) fail('not a .npy array (bad magic)');
  if (buf.length < 10) fail('truncated .npy header');
  const major = buf[6];
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail('truncated .npy header');
    headerLen = buf.readUInt32LE(8);
    headerStart = 12;
  } else {
    return fail(`unsupported .npy version ${major}.${buf[7]}`);
  }
  if (headerStart + headerLen > buf.length) fail('truncated .npy header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', headerStart, headerStart + headerLen);

  // The header is a Python literal written by numpy itself; three fixed keys are all we need.
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    fail(`unparseable .npy header ${JSON.stringify(header.trim())}`);
  const shape = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const v = Number(s.replace(/L$/, ''));
      if (!Number.isSafeInteger(v) || v < 0) fail(`bad .npy shape (${shapeText})`);
      return v;
    });

  const order = descr!.length > 0 && '<>|='.includes(descr![0]) ? descr![0] : '=';
  const code = order === '=' ? descr! : descr!.slice(1);
  const info = NPY_TYPES[code];
  if (!info) {
    if (code.startsWith('O')) fail('object array (pickled Python objects) refused: only numeric arrays are loaded');
    fail(`unsupported dtype '${descr}' (supported: ${Object.keys(NPY_TYPES).join(', ')}, little- or big-endian)`);
  }
  const n = numel(shape);
  const dataStart = headerStart + headerLen;
  const byteLen = n * info.itemsize;
  if (dataStart + byteLen > buf.length)
    fail(`truncated .npy data: ${shapeStr(shape)} ${descr} needs ${byteLen} bytes, ${buf.length - dataStart} present`);

  let bytes: Uint8Array = buf.subarray(dataStart, dataStart + byteLen);
  if (order === '>' && info.itemsize > 1) {
    bytes = Uint8Array.from(bytes);
    for (let i = 0; i < bytes.length; i += info.itemsize) bytes.subarray(i, i + info.itemsize).reverse();
  }
  let data: TypedArray;
  if (info.widen) {
    const narrow = info.widen === 'i2' ? new Int16Array(n) : new Uint16Array(n);
    new Uint8Array(narrow.buffer).set(bytes);
    data = Int32Array.from(narrow);
  } else {
    data = typedFromBytes(info.dtype, bytes, n);
  }

  if (fortran === 'True' && shape.length > 1) {
    // Fortran order = column-major: element (i0, i1, ..., ik) sits at i0 + s0*i1 + s0*s1*i2 + ...
    // Copy it out through the matching strides into C order.
    const strides = stridesOf([...shape].reverse()).reverse();
    const c = allocTyped(info.dtype, n);
    copyStridedView(data, 0, shape, strides, c);
    data = c;
  }
  return { dtype: info.dtype, shape, data };
}

/** Parses an .npz archive held in memory; keys are the entry names without '.npy'. */
export function decodeNpz(buf: Buffer, name: string): Map<string, HostTensor> {
  if (!looksLikeZip(buf)) throw new UserError(`${name}: not a numpy .npz archive (not a zip file)`);
  const zip = new ZipArchive(buf, name);
  const out = new Map<string, HostTensor>();
  for (const e of zip.entries) {
    if (e.name.endsWith('/')) continue; // directory entry
    if (!e.name.endsWith('.npy'))
      throw new UserError(`${name}: entry '${e.name}' is not a .npy array; not a numpy .npz archive`);
    const key = e.name.slice(0, -4);
    out.set(key, decodeNpy(zip.read(e), `${name}: '${key}'`));
  }
  if (out.size === 0) throw new UserError(`${name}: the .npz archive holds no arrays`);
  return out;
}

/** Reads an .npz archive from disk. */
export function readNpz(file: string): Map<string, HostTensor> {
  return decodeNpz(readFileOrThrow(file), file);
}
