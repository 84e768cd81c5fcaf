// PyTorch checkpoints (.pth / .pt / .bin) in the zip format torch.save has written since 1.6:
//
//   <archive>/data.pkl     the pickled object (usually a state_dict: OrderedDict name -> tensor)
//   <archive>/data/<key>   raw bytes of each storage, in the byte order named by <archive>/byteorder
//   <archive>/byteorder    "little" or "big" (absent in files from before 1.10: little)
//   <archive>/version, <archive>/.data/... bookkeeping we do not need
//
// Inside data.pkl a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
// where `storage` is a persistent id ('storage', torch.FloatStorage, '<key>', 'cpu', numel) that
// points at data/<key>. Several tensors may view the same storage at different offsets/strides.
//
// The pickle is read by the restricted unpickler in pickle.ts with the allow-list below: only
// the names needed to rebuild tensors and OrderedDicts resolve; everything else is refused.

import { type DType, type HostTensor, type TypedArray, UserError, numel, shapeStr } from '../tensor';
import { type PyCallable, PyTuple, unpickle } from './pickle';
import { copyStridedView } from './ops';
import { allocTyped, readFileOrThrow, typedFromBytes } from './safetensors';
import { ZipArchive, looksLikeZip } from './zip';

/** Element type of a torch storage. int16 has no host dtype; it is widened to int32 on load. */
type StorageKind = DType | 'int16';

const ITEMSIZE: Record<StorageKind, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** torch.<X>Storage -> element type. These names appear only as data inside persistent ids. */
const STORAGE_TYPES: Record<string, StorageKind> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  DoubleStorage: 'float64',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** torch dtype objects (torch.float32 ...), inert markers; they may appear in newer storage paths. */
const TORCH_DTYPES: Record<string, StorageKind> = {
  float32: 'float32',
  float: 'float32',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  float64: 'float64',
  double: 'float64',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

class StorageType {
  constructor(
    readonly qualname: string,
    readonly kind: StorageKind,
  ) {}
}

class TorchDType {
  constructor(
    readonly qualname: string,
    readonly kind: StorageKind,
  ) {}
}

/** A storage named by a persistent id; its bytes are read from the zip only when a tensor needs them. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly kind: StorageKind,
    readonly numel: number,
  ) {}
}

/** What _rebuild_tensor_v2 returns: a view description, materialised later with the tensor's name for errors. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

function intTuple(x: unknown, what: string, fail: (m: string) => never): number[] {
  if (!Array.isArray(x) || !x.every((v) => typeof v === 'number' && Number.isSafeInteger(v))) {
    return fail(`${what} is not a tuple of integers`);
  }
  return [...(x as number[])];
}

function makeGlobals(fail: (m: string) => never): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const fn = (qualname: string, call: (args: unknown[]) => unknown): void => {
    g.set(qualname, { qualname, call } satisfies PyCallable);
  };
  fn('collections.OrderedDict', (args) => {
    const m = new Map<unknown, unknown>();
    // OrderedDict(iterable_of_pairs) as well as the usual OrderedDict() followed by SETITEMS.
    if (args.length > 0 && Array.isArray(args[0])) {
      for (const pair of args[0] as unknown[]) {
        if (!Array.isArray(pair) || pair.length !== 2) fail('OrderedDict built from something other than pairs');
        m.set((pair as unknown[])[0], (pair as unknown[])[1]);
      }
    }
    return m;
  });
  const rebuildTensor = (args: unknown[]): TensorRef => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) return fail('_rebuild_tensor_v2 without a storage');
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
      return fail('_rebuild_tensor_v2 with a bad storage offset');
    const sz = intTuple(size, 'tensor size', fail);
    const st = intTuple(stride, 'tensor stride', fail);
    if (sz.some((d) => d < 0)) fail(`tensor size ${shapeStr(sz)} has a negative dimension`);
    if (sz.length !== st.length) fail(`tensor size ${shapeStr(sz)} and stride ${shapeStr(st)} differ in rank`);
    return new TensorRef(storage, offset, sz, st);
  };
  fn('torch._utils._rebuild_tensor', rebuildTensor);
  fn('torch._utils._rebuild_tensor_v2', rebuildTensor);
  // nn.Parameter wrappers: the parameter is its data; requires_grad, hooks and extra state are training-time details.
  fn('torch._utils._rebuild_parameter', (args) => args[0]);
  fn('torch._utils._rebuild_parameter_with_state', (args) => args[0]);
  for (const [name, kind] of Object.entries(STORAGE_TYPES))
    g.set(`torch.${name}`, new StorageType(`torch.${name}`, kind));
  for (const [name, kind] of Object.entries(TORCH_DTYPES))
    g.set(`torch.${name}`, new TorchDType(`torch.${name}`, kind));
  return g;
}

/** Keys under which training scripts commonly nest the model's state_dict, in order of preference. */
const WRAPPER_KEYS = ['state_dict', 'model_state_dict', 'model', 'module', 'params'];

function tensorEntries(m: Map<unknown, unknown>): [string, TensorRef][] {
  const out: [string, TensorRef][] = [];
  for (const [k, v] of m) if (typeof k === 'string' && v instanceof TensorRef) out.push([k, v]);
  return out;
}

/**
 * Finds the dict of tensors: the top-level dict itself, or a state_dict nested under one of
 * WRAPPER_KEYS (training checkpoints: {'epoch': 3, 'state_dict': {...}}). Non-tensor values
 * next to tensors (counters, strings) are skipped.
 */
function pickStateDict(top: unknown, fail: (m: string) => never): [string, TensorRef][] {
  if (!(top instanceof Map))
    return fail(
      `the checkpoint holds a ${top === null ? 'None' : Array.isArray(top) ? 'list/tuple' : typeof top}, not a dict of tensors`,
    );
  for (const key of WRAPPER_KEYS) {
    const inner = top.get(key);
    if (inner instanceof Map && tensorEntries(inner).length > 0 && tensorEntries(top).length === 0)
      return tensorEntries(inner);
  }
  const direct = tensorEntries(top);
  if (direct.length > 0) return direct;
  // Labels, not String(k): a tuple key stringifies every nested item (unbounded for shared sub-tuples).
  const keys = [...top.keys()].slice(0, 8).map((k) => (k instanceof PyTuple ? `<tuple of ${k.length}>` : String(k)));
  return fail(
    `no tensors found at the top level or under ${WRAPPER_KEYS.map((k) => `'${k}'`).join('/')}; top-level keys: ${keys.join(', ')}${top.size > 8 ? ', ...' : ''}`,
  );
}

function swapBytes(bytes: Uint8Array, itemsize: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  if (itemsize > 1) {
    for (let i = 0; i + itemsize <= out.length; i += itemsize) out.subarray(i, i + itemsize).reverse();
  }
  return out;
}

/** Parses a torch.save zip checkpoint held in memory and returns its tensors (copied, C-contiguous). */
export function decodePth(buf: Buffer, name: string): Map<string, HostTensor> {
  const fail = (msg: string): never => {
    throw new UserError(`${name}: ${msg}`);
  };
  if (!looksLikeZip(buf)) {
    // Legacy torch.save (before 1.6, or _use_new_zipfile_serialization=False) starts with a pickle
    // (PROTO opcode 0x80); the pre-0.4 format is a tar archive.
    const isTar = buf.length > 262 && buf.toString('latin1', 257, 262) === 'ustar';
    if ((buf.length > 0 && buf[0] === 0x80) || isTar) {
      fail(
        'legacy (non-zip) torch.save format, which is not supported: re-save it with PyTorch >= 1.6 ' +
          '(torch.save(torch.load(f), f2)) or convert it to safetensors',
      );
    }
    fail('not a PyTorch checkpoint (expected a torch.save zip archive)');
  }
  const zip = new ZipArchive(buf, name);
  const pkl = zip.entries.find((e) => /^([^/]+\/)?data\.pkl$/.test(e.name));
  if (!pkl) {
    if (zip.entries.some((e) => e.name.endsWith('.npy')))
      fail('this zip holds .npy arrays: it is a numpy .npz archive, not a PyTorch checkpoint; rename it to .npz');
    fail('zip archive without data.pkl: not a PyTorch checkpoint');
  }
  const prefix = pkl!.name.slice(0, pkl!.name.length - 'data.pkl'.length);
  if (zip.entries.some((e) => e.name === `${prefix}constants.pkl` || e.name.startsWith(`${prefix}code/`))) {
    fail(
      "this is a TorchScript archive (torch.jit.save); save the model's state_dict with torch.save(model.state_dict(), f) instead",
    );
  }
  const byteorderEntry = zip.get(`${prefix}byteorder`);
  const byteorder = byteorderEntry ? zip.read(byteorderEntry).toString('latin1').trim() : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') fail(`unknown byteorder '${byteorder}'`);

  const storages = new Map<string, StorageRef>();
  const top = unpickle(zip.read(pkl!), {
    name: `${name} (${pkl!.name})`,
    globals: makeGlobals(fail),
    persistentLoad: (pid) => {
      if (!(pid instanceof PyTuple) || pid[0] !== 'storage' || pid.length < 5)
        return fail(
          `unsupported persistent id (a ${pid instanceof PyTuple ? `tuple of ${pid.length}` : typeof pid}, expected ('storage', type, key, location, numel))`,
        );
      const [, type, key, , count] = pid;
      const kind = type instanceof StorageType || type instanceof TorchDType ? type.kind : undefined;
      if (kind === undefined) return fail(`storage '${String(key)}' has an unsupported type`);
      if (typeof key !== 'string' || typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)
        return fail('malformed storage persistent id');
      // One storage may back several tensors; they must agree on what it is.
      let ref = storages.get(key);
      if (!ref) storages.set(key, (ref = new StorageRef(key, kind, count)));
      return ref;
    },
  });

  const cache = new Map<string, TypedArray>();
  const storageData = (ref: StorageRef, tensor: string): TypedArray => {
    let data = cache.get(ref.key);
    if (data) return data;
    const entryName = `${prefix}data/${ref.key}`;
    if (!zip.get(entryName)) fail(`tensor '${tensor}': storage file '${entryName}' is missing from the archive`);
    const itemsize = ITEMSIZE[ref.kind];
    // Inflate no more than the storage needs (plus one byte, so a longer entry still reads as
    // "differs from the directory" rather than passing cut short): the declared entry size is
    // the file's word, the storage size is what the pickle asks for.
    let bytes: Uint8Array = zip.read(entryName, { maxBytes: ref.numel * itemsize });
    if (bytes.length < ref.numel * itemsize) {
      fail(
        `tensor '${tensor}': storage '${entryName}' has ${bytes.length} bytes, fewer than ${ref.numel} x ${itemsize}`,
      );
    }
    if (byteorder === 'big') bytes = swapBytes(bytes, itemsize);
    if (ref.kind === 'int16') {
      // No int16 host dtype: widen to int32 (values are preserved exactly).
      const i16 = new Int16Array(ref.numel);
      new Uint8Array(i16.buffer).set(bytes.subarray(0, ref.numel * 2));
      data = Int32Array.from(i16);
    } else {
      data = typedFromBytes(ref.kind, bytes, ref.numel);
    }
    cache.set(ref.key, data);
    return data;
  };

  const out = new Map<string, HostTensor>();
  for (const [key, t] of pickStateDict(top, fail)) {
    const n = numel(t.size);
    // Output is bounded by the storage (itself bounded by the file): a view of more elements than
    // its storage holds would need overlapping strides, which torch.save never writes for a
    // state dict, and would let 8 bytes of storage allocate size (1e9, 1e9) with stride (0, 0).
    if (n > t.storage.numel) {
      fail(
        `tensor '${key}': size ${shapeStr(t.size)} has ${n} elements, more than its ${t.storage.numel}-element storage`,
      );
    }
    if (n > 0) {
      // Largest storage index the view touches; torch never writes negative strides.
      let last = t.offset;
      for (let d = 0; d < t.size.length; d++) {
        if (t.stride[d] < 0) fail(`tensor '${key}': negative stride ${shapeStr(t.stride)}`);
        last += (t.size[d] - 1) * t.stride[d];
      }
      if (last >= t.storage.numel) {
        fail(
          `tensor '${key}': view (offset ${t.offset}, size ${shapeStr(t.size)}, stride ${shapeStr(t.stride)}) reaches element ${last} of a ${t.storage.numel}-element storage`,
        );
      }
    }
    const src = storageData(t.storage, key);
    const dtype: DType = t.storage.kind === 'int16' ? 'int32' : t.storage.kind;
    const data = allocTyped(dtype, n);
    copyStridedView(src, t.offset, t.size, t.stride, data);
    out.set(key, { dtype, shape: t.size, data });
  }
  return out;
}

/** Reads a torch.save zip checkpoint from disk. */
export function readPth(file: string): Map<string, HostTensor> {
  return decodePth(readFileOrThrow(file), file);
}
