// Weight loading: safetensors, zip, restricted pickle / .pth, .npz, and loadBackbone end to end.
// Layout conversion is in weights-layouts.test.ts. Every file is generated here (no python).

import { test, describe, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type HostTensor, UserError } from '../src/engine/tensor';
import {
  decodeSafetensors,
  decodeSafetensorsFile,
  encodeSafetensors,
  readSafetensors,
  writeSafetensors,
} from '../src/engine/weights/safetensors';
import { ZipArchive, crc32, crc32Js } from '../src/engine/weights/zip';
import { unpickle, PyTuple } from '../src/engine/weights/pickle';
import { decodePth } from '../src/engine/weights/pth';
import { decodeNpy, decodeNpz } from '../src/engine/weights/npz';
import { loadBackbone, readCheckpoint, stripModulePrefix } from '../src/engine/weights';
import {
  PickleWriter,
  type PthTensor,
  TINY,
  bytesOf,
  crc32Slow,
  makeZip,
  npy,
  npzOf,
  timmState,
  toNpz,
  torchStateDictPickle,
  torchZip,
} from './fixtures/weights/builders';

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'met-weights-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function bits(t: HostTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function assertSameTensor(a: HostTensor | undefined, b: HostTensor, what: string): void {
  assert.ok(a, `${what}: missing`);
  assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.ok(bits(a).equals(bits(b)), `${what}: values differ`);
}

/** Asserts that fn throws a UserError whose message contains every fragment. */
function throwsUser(fn: () => unknown, ...fragments: string[]): UserError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UserError, `expected a UserError, got ${err === undefined ? 'no error' : String(err)}`);
  for (const f of fragments)
    assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
  return err;
}

// A handcrafted safetensors file: header JSON given verbatim, so it can lie.
function rawSafetensors(header: Record<string, unknown>, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

// ------------------------------------------------------------------------------------------------

describe('safetensors', () => {
  const all: Record<string, HostTensor> = {
    f32: { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, -2.5, 3e-8, NaN, Infinity, -0]) },
    f16: { dtype: 'float16', shape: [3], data: Uint16Array.from([0x3c00, 0xc000, 0x7e00]) },
    bf16: { dtype: 'bfloat16', shape: [2], data: Uint16Array.from([0x3f80, 0xbf80]) },
    f64: { dtype: 'float64', shape: [2], data: Float64Array.from([Math.PI, -1e300]) },
    i64: { dtype: 'int64', shape: [3], data: BigInt64Array.from([1n, -(2n ** 62n), 2n ** 40n]) },
    i32: { dtype: 'int32', shape: [2, 1], data: Int32Array.from([-7, 2 ** 31 - 1]) },
    i8: { dtype: 'int8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
    u8: { dtype: 'uint8', shape: [1, 3], data: Uint8Array.from([0, 128, 255]) },
    bool: { dtype: 'bool', shape: [2], data: Uint8Array.from([1, 0]) },
    scalar: { dtype: 'float32', shape: [], data: Float32Array.from([42]) },
    empty: { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
  };

  test('round-trips every dtype bit for bit, with metadata', () => {
    const buf = encodeSafetensors(all, { format: 'pt', note: 'hi' });
    const { tensors, metadata } = decodeSafetensorsFile(buf, 'rt.safetensors');
    assert.deepEqual(metadata, { format: 'pt', note: 'hi' });
    assert.deepEqual([...tensors.keys()].sort(), Object.keys(all).sort());
    for (const [k, t] of Object.entries(all)) assertSameTensor(tensors.get(k), t, k);
  });

  test('header is space-padded to 8 bytes and every tensor is aligned to its item size', () => {
    const buf = encodeSafetensors(all);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const text = buf.toString('utf8', 8, 8 + n);
    assert.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text) as Record<string, { dtype: string; data_offsets: [number, number] }>;
    const size: Record<string, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, BOOL: 1 };
    for (const [k, h] of Object.entries(header)) assert.equal(h.data_offsets[0] % size[h.dtype], 0, k);
  });

  test('writeSafetensors writes atomically (no temporary left) and readSafetensors reads it back', () => {
    const file = path.join(tmp, 'w.safetensors');
    fs.writeFileSync(file, 'old contents');
    writeSafetensors(file, new Map(Object.entries(all)));
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('.tmp-')),
      [],
    );
    const back = readSafetensors(file);
    for (const [k, t] of Object.entries(all)) assertSameTensor(back.get(k), t, k);
  });

  test('writer refuses a tensor whose data does not match dtype or shape', () => {
    assert.throws(
      () => encodeSafetensors({ x: { dtype: 'float32', shape: [3], data: new Float32Array(2) } }),
      /2 values for shape \[3\]/,
    );
    assert.throws(
      () => encodeSafetensors({ x: { dtype: 'int32', shape: [2], data: new Float32Array(2) } }),
      /dtype int32 holds a Float32Array/,
    );
  });

  test('accepts __metadata__, gaps between tensors, and header order', () => {
    const data = new Uint8Array(16);
    new Float32Array(data.buffer).set([1, 2, 3, 4]);
    const buf = rawSafetensors(
      {
        __metadata__: { a: 'b' },
        second: { dtype: 'F32', shape: [1], data_offsets: [12, 16] },
        first: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      },
      data,
    );
    const t = decodeSafetensors(buf, 'gap.safetensors');
    assert.deepEqual([...t.keys()], ['second', 'first']);
    assert.deepEqual(Array.from(t.get('first')!.data as Float32Array), [1, 2]);
    assert.deepEqual(Array.from(t.get('second')!.data as Float32Array), [4]);
  });

  test('truncated files are refused, naming the file', () => {
    const buf = encodeSafetensors({ w: { dtype: 'float32', shape: [4, 4], data: new Float32Array(16) } });
    throwsUser(
      () => decodeSafetensors(buf.subarray(0, buf.length - 4), 'cut.safetensors'),
      'cut.safetensors',
      "tensor 'w'",
      'beyond the end',
      'truncated',
    );
    throwsUser(
      () => decodeSafetensors(buf.subarray(0, 20), 'cut.safetensors'),
      'cut.safetensors',
      'header length',
      'exceeds',
    );
    throwsUser(
      () => decodeSafetensors(buf.subarray(0, 5), 'cut.safetensors'),
      'cut.safetensors',
      'shorter than the 8-byte header length',
    );
  });

  test('headers whose offsets lie are refused: overlap, beyond the end, wrong size, reversed', () => {
    const data = new Uint8Array(32);
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors(
            {
              a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
              b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
            },
            data,
          ),
          'lie.safetensors',
        ),
      'lie.safetensors',
      "tensor 'b'",
      'overlap',
      "tensor 'a'",
    );
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [24, 40] } }, data),
          'lie.safetensors',
        ),
      "tensor 'a'",
      '[24, 40]',
      'beyond the end',
    );
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, data),
          'lie.safetensors',
        ),
      "tensor 'a'",
      'span 16 bytes',
      'F32 [3] needs 12',
    );
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data),
          'lie.safetensors',
        ),
      "tensor 'a'",
      'end before they begin',
    );
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, data),
          'lie.safetensors',
        ),
      "tensor 'a'",
      'not a list of non-negative integers',
    );
  });

  test('unknown dtypes are refused, naming tensor and dtype', () => {
    throwsUser(
      () =>
        decodeSafetensors(
          rawSafetensors({ 'blocks.0.x': { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)),
          'fp8.safetensors',
        ),
      'fp8.safetensors',
      "tensor 'blocks.0.x'",
      "unknown dtype 'F8_E4M3'",
    );
  });

  test('headers that are not JSON objects are refused', () => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    throwsUser(
      () => decodeSafetensors(Buffer.concat([len, Buffer.from('nope')]), 'bad.safetensors'),
      'bad.safetensors',
      'not valid JSON',
    );
    throwsUser(
      () => decodeSafetensors(Buffer.concat([len, Buffer.from('[1] ')]), 'bad.safetensors'),
      'not a JSON object',
    );
  });
});

// ------------------------------------------------------------------------------------------------

describe('zip', () => {
  const entries = [
    { name: 'a.txt', data: Buffer.from('hello hello hello hello'), deflate: true },
    { name: 'dir/b.bin', data: Uint8Array.from([1, 2, 3, 4, 5]) },
    { name: 'empty', data: new Uint8Array(0), deflate: true },
  ];

  test('reads stored and deflated entries, with and without zip64 records and local padding', () => {
    for (const opts of [{}, { zip64: true }, { pad: 40 }]) {
      const zip = new ZipArchive(makeZip(entries, opts), 'x.zip');
      assert.deepEqual(
        zip.entries.map((e) => e.name),
        ['a.txt', 'dir/b.bin', 'empty'],
      );
      for (const e of entries)
        assert.ok(zip.read(e.name).equals(Buffer.from(e.data)), `${e.name} ${JSON.stringify(opts)}`);
    }
  });

  test('CRC-32: the JS fallback agrees with zlib and a bitwise reference', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog');
    assert.equal(crc32Js(data), 0x414fa339);
    assert.equal(crc32(data), 0x414fa339);
    assert.equal(crc32Slow(data), 0x414fa339);
  });

  test('corrupt and truncated archives are refused', () => {
    const good = makeZip(entries);
    const flipped = Buffer.from(good);
    flipped[30 + 'a.txt'.length + 2] ^= 0xff; // inside the deflated data of a.txt
    throwsUser(() => new ZipArchive(flipped, 'x.zip').read('a.txt'), 'x.zip', "'a.txt'");
    throwsUser(() => new ZipArchive(good.subarray(0, good.length - 30), 'x.zip'), 'x.zip', 'end-of-central-directory');
    throwsUser(() => new ZipArchive(good, 'x.zip').read('nope'), "'nope' not found");
  });

  test('a deflated entry that inflates beyond its recorded size is refused (zip bomb)', () => {
    const zip = makeZip([{ name: 'z', data: Buffer.alloc(4096), deflate: true }]);
    // Shrink the recorded uncompressed size in the central directory.
    const cd = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    zip.writeUInt32LE(10, cd + 24);
    throwsUser(() => new ZipArchive(zip, 'bomb.zip').read('z'), 'bomb.zip', "'z'");
  });
});

// ------------------------------------------------------------------------------------------------

describe('restricted unpickler', () => {
  const noGlobals = { globals: new Map<string, unknown>(), name: 'test.pkl' };

  test('decodes scalars, strings, containers and the memo (protocols 2 and 4)', () => {
    const p = new PickleWriter().proto(4).frame(0).emptyDict().memoize().mark();
    p.str('int', true)
      .int(300)
      .str('neg', true)
      .int(-70000)
      .str('big', true)
      .int(2n ** 80n)
      .str('small-long', true)
      .int(2n ** 40n);
    p.str('f', true).float(-1.5).str('t', true).bool(true).str('n', true).none();
    p.str('tuple', true).int(1).int(2).tuple2().memoize();
    p.str('again', true).binget(1);
    p.str('list', true).emptyList().int(5).append().mark().int(6).int(7).appends();
    p.str('bytes', true).bytes(Uint8Array.from([1, 2, 250]));
    p.str('unicode').str('héllo ☃');
    p.setitems().stop();
    const v = unpickle(p.toBuffer(), noGlobals) as Map<string, unknown>;
    assert.equal(v.get('int'), 300);
    assert.equal(v.get('neg'), -70000);
    assert.equal(v.get('big'), 2n ** 80n);
    assert.equal(v.get('small-long'), 2 ** 40);
    assert.equal(v.get('f'), -1.5);
    assert.equal(v.get('t'), true);
    assert.equal(v.get('n'), null);
    assert.ok(v.get('tuple') instanceof PyTuple);
    assert.deepEqual([...(v.get('tuple') as unknown[])], [1, 2]);
    assert.equal(v.get('again'), v.get('tuple'));
    assert.deepEqual(v.get('list'), [5, 6, 7]);
    assert.deepEqual(v.get('bytes'), Uint8Array.from([1, 2, 250]));
    assert.equal(v.get('unicode'), 'héllo ☃');
  });

  test('refuses malformed streams with a message, not a crash', () => {
    throwsUser(() => unpickle(Buffer.from([0x80, 0x02, 0x4b]), noGlobals), 'test.pkl', 'truncated');
    throwsUser(() => unpickle(Buffer.from([0x80, 0x02, 0x68, 0x05, 0x2e]), noGlobals), 'memo key 5');
    throwsUser(() => unpickle(Buffer.from([0x80, 0x02, 0x2e]), noGlobals), 'underflow');
    throwsUser(() => unpickle(Buffer.from([0x80, 0x02, 0xff]), noGlobals), 'unsupported pickle opcode 0xff');
    throwsUser(() => unpickle(new PickleWriter().proto(2).ext1(1).stop().toBuffer(), noGlobals), 'EXT1');
  });
});

// ------------------------------------------------------------------------------------------------

describe('malicious pickles are refused before anything runs', () => {
  // Each would create `marker` if executed by Python's pickle. Our unpickler must refuse the
  // global by name; the marker file proves that nothing was executed.
  function evil(build: (p: PickleWriter, cmd: string) => void, marker: string): Buffer {
    const p = new PickleWriter().proto(2);
    build(p, `touch ${marker}`);
    return torchZip(p.stop().toBuffer(), {});
  }

  const cases: { label: string; global: string; build: (p: PickleWriter, cmd: string) => void }[] = [
    {
      label: "GLOBAL 'os system' + REDUCE",
      global: 'os.system',
      build: (p, cmd) => p.global('os', 'system').str(cmd).tuple1().reduce(),
    },
    {
      label: "GLOBAL 'posix system' + REDUCE",
      global: 'posix.system',
      build: (p, cmd) => p.global('posix', 'system').str(cmd).tuple1().reduce(),
    },
    {
      label: "STACK_GLOBAL 'builtins eval' + REDUCE",
      global: 'builtins.eval',
      build: (p, cmd) =>
        p
          .str('builtins', true)
          .str('eval', true)
          .stackGlobal()
          .str(`__import__('os').system('${cmd}')`)
          .tuple1()
          .reduce(),
    },
    {
      label: "GLOBAL 'subprocess Popen' + REDUCE",
      global: 'subprocess.Popen',
      build: (p, cmd) =>
        p
          .global('subprocess', 'Popen')
          .emptyList()
          .str('sh')
          .append()
          .str('-c')
          .append()
          .str(cmd)
          .append()
          .tuple1()
          .reduce(),
    },
    { label: "INST 'os system'", global: 'os.system', build: (p, cmd) => p.mark().str(cmd).inst('os', 'system') },
    {
      label: 'forbidden global hidden after valid tensors',
      global: 'os.system',
      build: (p, cmd) =>
        p
          .global('collections', 'OrderedDict')
          .emptyTuple()
          .reduce()
          .str('x')
          .global('os', 'system')
          .str(cmd)
          .tuple1()
          .reduce()
          .setitem(),
    },
  ];

  for (const c of cases) {
    test(`${c.label} -> refused, naming '${c.global}' and the file`, () => {
      const marker = path.join(tmp, `pwned-${c.global}-${Math.random().toString(36).slice(2)}`);
      const file = path.join(tmp, 'evil.pth');
      fs.writeFileSync(file, evil(c.build, marker));
      throwsUser(() => loadBackbone(file), file, `'${c.global}'`, 'refusing');
      throwsUser(() => decodePth(fs.readFileSync(file), 'evil.pth'), 'evil.pth', `'${c.global}'`);
      assert.equal(fs.existsSync(marker), false, 'the payload must not have run');
    });
  }

  test('allowed names are matched exactly (no prefix tricks)', () => {
    const p = new PickleWriter().proto(2).global('torch._utils', '_rebuild_tensor_v2.__globals__').stop();
    throwsUser(
      () => decodePth(torchZip(p.toBuffer(), {}), 'trick.pth'),
      "'torch._utils._rebuild_tensor_v2.__globals__'",
    );
    const q = new PickleWriter().proto(2).global('collections', 'OrderedDict.fromkeys').stop();
    throwsUser(() => decodePth(torchZip(q.toBuffer(), {}), 'trick.pth'), "'collections.OrderedDict.fromkeys'");
  });

  test('an allowed type used as a function is refused (storage classes are data only)', () => {
    const p = new PickleWriter().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop();
    throwsUser(() => decodePth(torchZip(p.toBuffer(), {}), 'call.pth'), 'call.pth', 'not callable');
  });
});

// ------------------------------------------------------------------------------------------------

describe('.pth (torch.save zip)', () => {
  // Storage 0: six floats 0..5 viewed as [2,3]; the transpose and a column slice share it.
  const s0 = Float32Array.from([0, 1, 2, 3, 4, 5]);
  const s1 = Uint16Array.from([0x3800, 0xbc00, 0x4000]); // half 0.5, -1, 2
  const s2 = BigInt64Array.from([7n, -8n]);
  const s3 = Int16Array.from([-3, 30000]);
  const tensors: [string, PthTensor][] = [
    ['base', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 0, size: [2, 3], stride: [3, 1] }],
    ['t', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 0, size: [3, 2], stride: [1, 3] }],
    ['cols', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 1, size: [2, 2], stride: [3, 1] }],
    ['every_other', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 1, size: [2], stride: [4] }],
    [
      'broadcast',
      { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 3, size: [2, 3], stride: [0, 1] },
    ],
    ['scalar', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 5, size: [], stride: [] }],
    [
      'half',
      { storage: '1', storageType: 'HalfStorage', storageNumel: 3, offset: 0, size: [3], stride: [1], parameter: true },
    ],
    ['long', { storage: '2', storageType: 'LongStorage', storageNumel: 2, offset: 0, size: [2], stride: [1] }],
    ['short', { storage: '3', storageType: 'ShortStorage', storageNumel: 2, offset: 0, size: [2], stride: [1] }],
  ];
  const storages = { 0: bytesOf(s0), 1: bytesOf(s1), 2: bytesOf(s2), 3: bytesOf(s3) };

  function checkValues(m: Map<string, HostTensor>): void {
    const f = (k: string): number[] => Array.from(m.get(k)!.data as Float32Array);
    assert.deepEqual(m.get('base')!.shape, [2, 3]);
    assert.deepEqual(f('base'), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(m.get('t')!.shape, [3, 2]);
    assert.deepEqual(f('t'), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(f('cols'), [1, 2, 4, 5]);
    assert.deepEqual(f('every_other'), [1, 5]);
    assert.deepEqual(f('broadcast'), [3, 4, 5, 3, 4, 5]);
    assert.deepEqual(m.get('scalar')!.shape, []);
    assert.deepEqual(f('scalar'), [5]);
    assert.equal(m.get('half')!.dtype, 'float16');
    assert.deepEqual(Array.from(m.get('half')!.data as Uint16Array), [0x3800, 0xbc00, 0x4000]);
    assert.equal(m.get('long')!.dtype, 'int64');
    assert.deepEqual(Array.from(m.get('long')!.data as BigInt64Array), [7n, -8n]);
    assert.equal(m.get('short')!.dtype, 'int32'); // int16 widened
    assert.deepEqual(Array.from(m.get('short')!.data as Int32Array), [-3, 30000]);
  }

  test('a hand-built protocol-2 checkpoint with strided views loads with correct values', () => {
    const m = decodePth(torchZip(torchStateDictPickle(tensors), storages), 'hand.pth');
    assert.deepEqual(
      [...m.keys()],
      tensors.map(([k]) => k),
    );
    checkValues(m);
  });

  test('wrapped checkpoints ({epoch, lr, state_dict: ...}) are unwrapped', () => {
    for (const key of ['state_dict', 'model', 'model_state_dict', 'module', 'params']) {
      checkValues(decodePth(torchZip(torchStateDictPickle(tensors, key), storages), 'wrapped.pth'));
    }
  });

  test("DataParallel's 'module.' prefix is stripped only when every key has it", () => {
    const named = tensors.map(([k, t]) => [`module.${k}`, t] as [string, PthTensor]);
    checkValues(stripModulePrefix(decodePth(torchZip(torchStateDictPickle(named), storages), 'dp.pth')));
    const mixed = new Map<string, HostTensor>([
      ['module.a', { dtype: 'float32', shape: [], data: new Float32Array(1) }],
      ['b', { dtype: 'float32', shape: [], data: new Float32Array(1) }],
    ]);
    assert.deepEqual([...stripModulePrefix(mixed).keys()], ['module.a', 'b']);
  });

  test('a real torch.save file (PyTorch 1.13, zip64 end record, 64-byte alignment) loads', () => {
    // torch.save(OrderedDict(base=arange(6).reshape(2,3), t=base.t(), s=base[:, 1:], h=half([.5,-1,2]), i=long([7,-8])), BytesIO())
    const m = decodePth(Buffer.from(TORCH_113_MINI, 'base64'), 'mini.pt');
    assert.deepEqual(Array.from(m.get('base')!.data as Float32Array), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(m.get('t')!.shape, [3, 2]);
    assert.deepEqual(Array.from(m.get('t')!.data as Float32Array), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(m.get('s')!.shape, [2, 2]);
    assert.deepEqual(Array.from(m.get('s')!.data as Float32Array), [1, 2, 4, 5]);
    assert.deepEqual(Array.from(m.get('h')!.data as Uint16Array), [0x3800, 0xbc00, 0x4000]);
    assert.deepEqual(Array.from(m.get('i')!.data as BigInt64Array), [7n, -8n]);
  });

  test('big-endian checkpoints are byte-swapped', () => {
    const be = Buffer.from(bytesOf(Float32Array.from([1.5, -2])));
    for (let i = 0; i < be.length; i += 4) be.subarray(i, i + 4).reverse();
    const p = torchStateDictPickle([
      ['w', { storage: '0', storageType: 'FloatStorage', storageNumel: 2, offset: 0, size: [2], stride: [1] }],
    ]);
    const zip = makeZip([
      { name: 'a/data.pkl', data: p },
      { name: 'a/byteorder', data: Buffer.from('big') },
      { name: 'a/data/0', data: be },
    ]);
    assert.deepEqual(Array.from(decodePth(zip, 'be.pth').get('w')!.data as Float32Array), [1.5, -2]);
  });

  test('views reaching outside their storage, and missing storages, are refused', () => {
    const over = torchStateDictPickle([
      ['w', { storage: '0', storageType: 'FloatStorage', storageNumel: 6, offset: 2, size: [2, 3], stride: [3, 1] }],
    ]);
    throwsUser(
      () => decodePth(torchZip(over, storages), 'over.pth'),
      'over.pth',
      "tensor 'w'",
      'reaches element 7 of a 6-element storage',
    );
    const missing = torchStateDictPickle([
      ['w', { storage: '9', storageType: 'FloatStorage', storageNumel: 6, offset: 0, size: [6], stride: [1] }],
    ]);
    throwsUser(
      () => decodePth(torchZip(missing, storages), 'missing.pth'),
      "tensor 'w'",
      "'archive/data/9' is missing",
    );
    const short = torchStateDictPickle([
      ['w', { storage: '0', storageType: 'FloatStorage', storageNumel: 60, offset: 0, size: [60], stride: [1] }],
    ]);
    throwsUser(() => decodePth(torchZip(short, storages), 'short.pth'), "tensor 'w'", 'fewer than 60 x 4');
  });

  test('legacy, TorchScript and non-checkpoint files get clear errors', () => {
    const legacy = Buffer.concat([
      Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]),
      Buffer.alloc(20),
    ]);
    throwsUser(() => decodePth(legacy, 'old.pth'), 'old.pth', 'legacy', 'PyTorch >= 1.6', 'safetensors');
    const script = torchZip(torchStateDictPickle([]), {}, 'archive', [
      { name: 'archive/constants.pkl', data: Buffer.from([0x80, 0x02, 0x4e, 0x2e]) },
    ]);
    throwsUser(() => decodePth(script, 'jit.pt'), 'jit.pt', 'TorchScript');
    throwsUser(() => decodePth(Buffer.from('hello'), 'text.pth'), 'text.pth', 'not a PyTorch checkpoint');
    const noTensors = new PickleWriter().proto(2).emptyDict().str('epoch').int(3).setitem().stop().toBuffer();
    throwsUser(() => decodePth(torchZip(noTensors, {}), 'empty.pth'), 'empty.pth', 'no tensors found', 'epoch');
  });
});

// ------------------------------------------------------------------------------------------------

describe('.npz', () => {
  test('stored and deflated archives decode to the same tensors', () => {
    const state = toNpz(timmState());
    for (const deflate of [false, true]) {
      const m = decodeNpz(npzOf(state, deflate), 'g.npz');
      assert.deepEqual([...m.keys()], [...state.keys()]);
      for (const [k, t] of state) assertSameTensor(m.get(k), t, k);
    }
  });

  test('numpy-written .npz (np.savez_compressed, zip64 extras) decodes', () => {
    // np.savez_compressed(f, **{'Transformer/x': arange(12, dtype='<f4').reshape(3,4), 'cls': ones((1,1,2), '<f4')})
    const m = decodeNpz(Buffer.from(NUMPY_SAVEZ_COMPRESSED, 'base64'), 'np.npz');
    assert.deepEqual(m.get('Transformer/x')!.shape, [3, 4]);
    assert.deepEqual(Array.from(m.get('Transformer/x')!.data as Float32Array), [...Array(12).keys()]);
    assert.deepEqual(Array.from(m.get('cls')!.data as Float32Array), [1, 1]);
  });

  test('.npy versions, dtypes, byte orders and Fortran order', () => {
    const v = (buf: Buffer): unknown[] => Array.from(decodeNpy(buf, 'x.npy').data as ArrayLike<unknown>);
    assert.deepEqual(v(npy('<f4', [2], Float32Array.from([1, 2]), { version: 2 })), [1, 2]);
    assert.deepEqual(v(npy('<f4', [2], Float32Array.from([1, 2]), { version: 3 })), [1, 2]);
    assert.deepEqual(v(npy('<f8', [2], Float64Array.from([0.1, 2]))), [0.1, 2]);
    assert.equal(decodeNpy(npy('<f2', [1], Uint16Array.from([0x3c00])), 'x').dtype, 'float16');
    assert.deepEqual(v(npy('<i8', [1], BigInt64Array.from([-5n]))), [-5n]);
    assert.deepEqual(v(npy('|u1', [2], Uint8Array.from([3, 250]))), [3, 250]);
    assert.deepEqual(v(npy('<i2', [2], Int16Array.from([-2, 300]))), [-2, 300]);
    const be = Buffer.from(bytesOf(Float32Array.from([1.5, -4])));
    for (let i = 0; i < 8; i += 4) be.subarray(i, i + 4).reverse();
    assert.deepEqual(v(npy('>f4', [2], be)), [1.5, -4]);
    // Fortran order: [2, 3] stored column-major -> C order rows.
    const f = decodeNpy(npy('<f4', [2, 3], Float32Array.from([0, 3, 1, 4, 2, 5]), { fortran: true }), 'x');
    assert.deepEqual(f.shape, [2, 3]);
    assert.deepEqual(Array.from(f.data as Float32Array), [0, 1, 2, 3, 4, 5]);
    const f3 = decodeNpy(npy('<f4', [2, 2, 2], Float32Array.from([0, 4, 2, 6, 1, 5, 3, 7]), { fortran: true }), 'x');
    assert.deepEqual(Array.from(f3.data as Float32Array), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test('object arrays, unknown dtypes and truncation are refused', () => {
    throwsUser(() => decodeNpy(npy('|O', [1], new Uint8Array(8)), "g.npz: 'x'"), "g.npz: 'x'", 'object array');
    throwsUser(() => decodeNpy(npy('<c8', [1], new Uint8Array(8)), 'x'), "unsupported dtype '<c8'");
    throwsUser(() => decodeNpy(npy('<f4', [4], new Uint8Array(8)), 'x'), 'truncated');
    throwsUser(
      () => decodeNpz(makeZip([{ name: 'a.txt', data: Buffer.from('x') }]), 'g.npz'),
      'g.npz',
      "'a.txt' is not a .npy",
    );
  });
});

// ------------------------------------------------------------------------------------------------

describe('loadBackbone', () => {
  const H = { heads: TINY.H };

  test('loads .safetensors, .pth and .npz and picks the reader by content', () => {
    const state = timmState();
    const st = path.join(tmp, 'tiny.safetensors');
    writeSafetensors(st, state);
    const a = loadBackbone(st, { overrides: H });
    assert.equal(a.layout, 'timm');
    assert.equal(a.format, 'safetensors');
    for (const [k, t] of state) assertSameTensor(a.tensors.get(k), t, k);

    // Same bytes under a misleading extension: the magic bytes decide.
    const disguised = path.join(tmp, 'tiny.weights');
    fs.copyFileSync(st, disguised);
    assert.equal(loadBackbone(disguised, { overrides: H }).format, 'safetensors');

    const npzFile = path.join(tmp, 'tiny.npz');
    fs.writeFileSync(npzFile, npzOf(toNpz(state), true));
    const b = loadBackbone(npzFile);
    assert.equal(b.layout, 'npz');
    assert.equal(b.format, 'npz');
    assert.equal(b.config.heads, TINY.H);

    // .pth: a timm state dict through the pickle path (all tensors in one storage, at offsets).
    const names = [...state.keys()];
    const flat = new Float32Array(names.reduce((n, k) => n + state.get(k)!.data.length, 0));
    const entries: [string, PthTensor][] = [];
    let at = 0;
    for (const k of names) {
      const t = state.get(k)!;
      flat.set(t.data as Float32Array, at);
      const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a2, d) => a2 * d, 1));
      entries.push([
        `module.${k}`,
        { storage: '0', storageType: 'FloatStorage', storageNumel: flat.length, offset: at, size: t.shape, stride },
      ]);
      at += t.data.length;
    }
    const pth = path.join(tmp, 'tiny.bin');
    fs.writeFileSync(pth, torchZip(torchStateDictPickle(entries, 'state_dict'), { 0: bytesOf(flat) }));
    const c = loadBackbone(pth, { overrides: H });
    assert.equal(c.format, 'pth');
    for (const [k, t] of state) assertSameTensor(c.tensors.get(k), t, k);
  });

  test('errors name the file: missing file, not a checkpoint, LFS pointer, empty file', () => {
    throwsUser(() => loadBackbone(path.join(tmp, 'nope.pth')), 'nope.pth', 'file not found');
    const text = path.join(tmp, 'readme.md');
    fs.writeFileSync(text, '# not weights\n');
    throwsUser(() => loadBackbone(text), 'readme.md', 'not a recognised checkpoint', '.safetensors');
    const lfs = path.join(tmp, 'model.safetensors');
    fs.writeFileSync(lfs, 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n');
    throwsUser(() => loadBackbone(lfs), 'model.safetensors', 'Git LFS pointer');
    const lfs2 = path.join(tmp, 'model.ckpt-data');
    fs.writeFileSync(lfs2, 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n');
    throwsUser(() => loadBackbone(lfs2), 'Git LFS pointer');
    const empty = path.join(tmp, 'empty.bin');
    fs.writeFileSync(empty, '');
    throwsUser(() => loadBackbone(empty), 'empty.bin', 'empty');
    throwsUser(() => loadBackbone(tmp), 'is a directory');
  });

  test('errors name the file: truncated or lying safetensors, unknown dtype, tiny zip', () => {
    const good = encodeSafetensors(timmState());
    const cut = path.join(tmp, 'cut.safetensors');
    fs.writeFileSync(cut, good.subarray(0, good.length - 100));
    throwsUser(() => loadBackbone(cut), cut, 'beyond the end of the data section');
    const lie = path.join(tmp, 'lie.safetensors');
    fs.writeFileSync(
      lie,
      rawSafetensors(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        new Uint8Array(12),
      ),
    );
    throwsUser(() => loadBackbone(lie), lie, "tensor 'b'", 'overlap');
    const fp8 = path.join(tmp, 'fp8.safetensors');
    fs.writeFileSync(
      fp8,
      rawSafetensors({ w: { dtype: 'F8_E5M2', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
    );
    throwsUser(() => loadBackbone(fp8), fp8, "tensor 'w'", "unknown dtype 'F8_E5M2'");
    const tiny = path.join(tmp, 'tiny.pth');
    fs.writeFileSync(tiny, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]));
    throwsUser(() => loadBackbone(tiny), tiny, 'not a zip archive, or truncated');
  });

  test('missing or mis-shaped tensors throw with the report; unexpected keys alone do not', () => {
    const state = timmState();
    state.set('blocks.0.attn.qkv.weight', { dtype: 'float32', shape: [24, 9], data: new Float32Array(24 * 9) });
    state.delete('blocks.1.norm2.bias');
    const file = path.join(tmp, 'weights.safetensors');
    writeSafetensors(file, state);
    const e = throwsUser(
      () => loadBackbone(file, { overrides: H }),
      file,
      `${file}: tensor 'blocks.0.attn.qkv.weight' expected [24, 8], found [24, 9]`,
      "tensor 'blocks.1.norm2.bias' is missing",
    );
    assert.ok(!e.message.includes('unexpected'));

    const extra = timmState();
    extra.set('fc_norm.weight', { dtype: 'float32', shape: [8], data: new Float32Array(8) });
    writeSafetensors(file, extra);
    const ok = loadBackbone(file, { overrides: H });
    assert.deepEqual(ok.report.unexpected, ['fc_norm.weight']);
  });

  test('an explicit layout is honoured and an unknown one refused', () => {
    const file = path.join(tmp, 'hf-as-timm.safetensors');
    writeSafetensors(file, timmState());
    assert.equal(loadBackbone(file, { layout: 'timm', overrides: H }).layout, 'timm');
    throwsUser(() => loadBackbone(file, { layout: 'keras' as never }), "unknown layout 'keras'");
  });

  test('readCheckpoint returns the raw keys and dtypes', () => {
    const file = path.join(tmp, 'raw.safetensors');
    writeSafetensors(file, { a: { dtype: 'float16', shape: [1], data: Uint16Array.from([0x3c00]) } });
    const c = readCheckpoint(file);
    assert.equal(c.format, 'safetensors');
    assert.equal(c.tensors.get('a')!.dtype, 'float16');
  });

  test('the parity fixtures load identically from .pth and .safetensors', () => {
    const dir = path.join(__dirname, 'fixtures');
    const pth = path.join(dir, 'tv_a.pth');
    const st = path.join(dir, 'tv_a.safetensors');
    for (const f of [pth, st])
      assert.ok(fs.existsSync(f), `${f} is missing (regenerate: /usr/bin/python3 scripts/make_fixtures.py)`);
    const a = readCheckpoint(pth).tensors;
    const b = readCheckpoint(st).tensors;
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [k, v] of b) assertSameTensor(a.get(k), v, k);
  });
});

// torch.save output of PyTorch 1.13 (see the test above for what it holds); 1379 bytes.
const TORCH_113_MINI =
  'UEsDBAAACAgAAAAAAAAAAAAAAAAAAAAAAAAQABIAYXJjaGl2ZS9kYXRhLnBrbEZCDgBaWlpaWlpaWlpaWlpaWoACY2NvbGxlY3Rpb25zCk9yZGVyZWREaWN0CnEAKVJxAShYBAAAAGJhc2VxAmN0b3JjaC5fdXRpbHMKX3JlYnVpbGRfdGVuc29yX3YyCnEDKChYBwAAAHN0b3JhZ2VxBGN0b3JjaApGbG9hdFN0b3JhZ2UKcQVYAQAAADBxBlgDAAAAY3B1cQdLBnRxCFFLAEsCSwOGcQlLA0sBhnEKiWgAKVJxC3RxDFJxDVgBAAAAdHEOaAMoKGgEaAVoBmgHSwZ0cQ9RSwBLA0sChnEQSwFLA4ZxEYloAClScRJ0cRNScRRYAQAAAHNxFWgDKChoBGgFaAZoB0sGdHEWUUsBSwJLAoZxF0sDSwGGcRiJaAApUnEZdHEaUnEbWAEAAABocRxoAygoaARjdG9yY2gKSGFsZlN0b3JhZ2UKcR1YAQAAADFxHmgHSwN0cR9RSwBLA4VxIEsBhXEhiWgAKVJxInRxI1JxJFgBAAAAaXElaAMoKGgEY3RvcmNoCkxvbmdTdG9yYWdlCnEmWAEAAAAycSdoB0sCdHEoUUsASwKFcSlLAYVxKoloAClScSt0cSxScS11LlBLBwh9lQVYswEAALMBAABQSwMEAAAICAAAAAAAAAAAAAAAAAAAAAAAAA4AEQBhcmNoaXZlL2RhdGEvMEZCDQBaWlpaWlpaWlpaWlpaAAAAAAAAgD8AAABAAABAQAAAgEAAAKBAUEsHCBeQ55EYAAAAGAAAAFBLAwQAAAgIAAAAAAAAAAAAAAAAAAAAAAAADgAsAGFyY2hpdmUvZGF0YS8xRkIoAFpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWloAOAC8AEBQSwcIABQLmgYAAAAGAAAAUEsDBAAACAgAAAAAAAAAAAAAAAAAAAAAAAAOAD4AYXJjaGl2ZS9kYXRhLzJGQjoAWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWgcAAAAAAAAA+P////////9QSwcITLrhXxAAAAAQAAAAUEsDBAAACAgAAAAAAAAAAAAAAAAAAAAAAAAPADMAYXJjaGl2ZS92ZXJzaW9uRkIvAFpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaMwpQSwcI0Z5nVQIAAAACAAAAUEsBAgAAAAAICAAAAAAAAH2VBVizAQAAswEAABAAAAAAAAAAAAAAAAAAAAAAAGFyY2hpdmUvZGF0YS5wa2xQSwECAAAAAAgIAAAAAAAAF5DnkRgAAAAYAAAADgAAAAAAAAAAAAAAAAADAgAAYXJjaGl2ZS9kYXRhLzBQSwECAAAAAAgIAAAAAAAAABQLmgYAAAAGAAAADgAAAAAAAAAAAAAAAABoAgAAYXJjaGl2ZS9kYXRhLzFQSwECAAAAAAgIAAAAAAAATLrhXxAAAAAQAAAADgAAAAAAAAAAAAAAAADWAgAAYXJjaGl2ZS9kYXRhLzJQSwECAAAAAAgIAAAAAAAA0Z5nVQIAAAACAAAADwAAAAAAAAAAAAAAAABgAwAAYXJjaGl2ZS92ZXJzaW9uUEsGBiwAAAAAAAAAHgMtAAAAAAAAAAAABQAAAAAAAAAFAAAAAAAAAC8BAAAAAAAA0gMAAAAAAABQSwYHAAAAAAEFAAAAAAAAAQAAAFBLBQYAAAAABQAFAC8BAADSAwAAAAA=';

// np.savez_compressed output of numpy 1.24 (see the test above); 441 bytes.
const NUMPY_SAVEZ_COMPRESSED =
  'UEsDBBQAAAAIAAAAIQAtbyImZgAAALAAAAARABQAVHJhbnNmb3JtZXIveC5ucHkBABAAsAAAAAAAAABmAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GsY6CiaaOgq1CmQDLgYwaLAHEg5ABMQNQLwAiA8A8QMgZnBkYBAAYgUgNnAEAFBLAwQUAAAACAAAACEAaXYKDE0AAACIAAAABwAUAGNscy5ucHkBABAAiAAAAAAAAABNAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GoY6CkBkpKmjUKtAHuBiYGiwB2EAUEsBAhQDFAAAAAgAAAAhAC1vIiZmAAAAsAAAABEAAAAAAAAAAAAAAIABAAAAAFRyYW5zZm9ybWVyL3gubnB5UEsBAhQDFAAAAAgAAAAhAGl2CgxNAAAAiAAAAAcAAAAAAAAAAAAAAIABqQAAAGNscy5ucHlQSwUGAAAAAAIAAgB0AAAALwEAAAAA';
