// Untrusted weight and image files stay bounded (issue 11, findings 3, 4 and 7): each hostile
// file is built here, parsed in a process of its own (test/fixtures/weights/bounded-parse.ts)
// under a time limit, and must fail with a named error in bounded time and memory.

import { test, describe, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { UserError } from '../src/engine/tensor';
import { unpickle, PyTuple } from '../src/engine/weights/pickle';
import { decodePth } from '../src/engine/weights/pth';
import { INFLATE_ALLOWANCE_BYTES, MAX_INFLATE_RATIO, ZipArchive } from '../src/engine/weights/zip';
import { MAX_IMAGE_FILE_BYTES } from '../src/engine/data/image';
import {
  PickleWriter,
  type PthTensor,
  makeZip,
  npy,
  torchStateDictPickle,
  torchZip,
} from './fixtures/weights/builders';

const HARNESS = path.join(__dirname, 'fixtures', 'weights', 'bounded-parse.ts');

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'met-bounds-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Parsed {
  ok: boolean;
  name?: string;
  message?: string;
  ms: number;
  maxRssMb: number;
}

/** Parses `file` as `kind` in a child process killed after `timeoutMs`; fails the test on a timeout or crash. */
function parseBounded(kind: string, file: string, timeoutMs = 30_000): Parsed {
  const r = spawnSync(process.execPath, ['--import', 'tsx', HARNESS, kind, file], {
    timeout: timeoutMs,
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  assert.equal(r.signal, null, `parsing ${path.basename(file)} ran past ${timeoutMs} ms (killed; ${r.stderr})`);
  assert.equal(r.status, 0, `parse process failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Parsed;
}

/** Baseline peak RSS of the harness parsing nothing much, so memory bounds are relative to Node + tsx. */
let baseRssMb = 0;
function baseline(): number {
  if (baseRssMb) return baseRssMb;
  const f = path.join(tmp, 'empty.safetensors');
  fs.writeFileSync(f, Buffer.alloc(0));
  return (baseRssMb = parseBounded('safetensors', f).maxRssMb);
}

function assertNamed(r: Parsed, ...fragments: string[]): void {
  assert.equal(r.ok, false, 'the hostile file was accepted');
  assert.equal(r.name, 'UserError', `expected a UserError, got ${r.name}: ${r.message}`);
  for (const f of fragments)
    assert.ok(r.message!.includes(f), `message ${JSON.stringify(r.message)} lacks ${JSON.stringify(f)}`);
}

function throwsUser(fn: () => unknown, ...fragments: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
  for (const f of fragments)
    assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
}

const noGlobals = { globals: new Map<string, unknown>(), name: 'test.pkl' };

/**
 * The 415-byte .pth: a dict whose key is t32, where t0 = (0,) and t(i+1) = (ti, ti) built
 * from the memo. As a value that is 33 small tuples; expanded (JSON) it is 2^32 zeros.
 */
function sharedTupleKeyPickle(levels: number): Buffer {
  const p = new PickleWriter().proto(2);
  p.int(0).tuple1().longBinput(0);
  for (let i = 0; i < levels; i++)
    p.longBinget(i)
      .longBinget(i)
      .tuple2()
      .longBinput(i + 1);
  p.emptyDict().longBinget(levels).str('v').setitem().stop();
  return p.toBuffer();
}

describe('pickle dict keys (finding 3)', () => {
  test('a key of memoised sub-tuples shared 32 levels deep loads in bounded time and memory', () => {
    const pkl = sharedTupleKeyPickle(32);
    const file = path.join(tmp, 'shared-key.pth');
    fs.writeFileSync(file, torchZip(pkl, {}));
    assert.ok(fs.statSync(file).size < 1024, 'the hostile file is small');
    const r = parseBounded('pth', file);
    // It is a dict without tensors: refused by name, after the key was interned in O(33) work.
    assertNamed(r, 'no tensors found', '<tuple of 2>');
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
    assert.ok(r.maxRssMb < baseline() + 64, `peak RSS ${r.maxRssMb} MB vs a ${baseline()} MB baseline`);
  });

  test('structurally equal tuple keys are one dict entry; unequal ones are not', () => {
    const p = new PickleWriter().proto(2).emptyDict().mark();
    p.int(1).str('a').tuple2().str('first');
    p.int(1).str('a').tuple2().str('second'); // equal to the first key, a different object
    p.int(1).str('b').tuple2().str('third');
    p.int(1).int(1).tuple1().tuple2().str('nested');
    p.int(1).int(1).tuple1().tuple2().str('nested again');
    p.setitems().stop();
    const d = unpickle(p.toBuffer(), noGlobals) as Map<unknown, unknown>;
    assert.equal(d.size, 3);
    const values = [...d.values()];
    assert.deepEqual(values, ['second', 'third', 'nested again']);
    const keys = [...d.keys()] as PyTuple[];
    assert.ok(keys.every((k) => k instanceof PyTuple));
    assert.deepEqual([...keys[0]], [1, 'a']);
  });

  test('a key that reaches itself through a list is refused by name, not a TypeError', () => {
    // L = []; t = (L,); L.append(t); {t: None}
    const p = new PickleWriter().proto(2);
    p.emptyList().binput(0).binget(0).tuple1().binput(1).append();
    p.emptyDict().binget(1).none().setitem().stop();
    throwsUser(() => unpickle(p.toBuffer(), noGlobals), 'test.pkl', 'dict key', 'list', 'unhashable');
  });

  test('keys nested past 100 tuples are refused by name (no stack overflow)', () => {
    // {((((None,),),)...): None} with 5000 levels, built with DICT from a MARK.
    const q = new PickleWriter().proto(2).mark().none();
    for (let i = 0; i < 5000; i++) q.tuple1();
    q.none().dict().stop();
    throwsUser(() => unpickle(q.toBuffer(), noGlobals), 'nested more than 100 levels');
  });

  test('one memoised list handed to OrderedDict many times hits the work budget by name', () => {
    // A list of 20k pairs (~100 KB) passed to OrderedDict 2000 times: 40M steps for ~110 KB.
    const p = new PickleWriter().proto(2).emptyList().binput(0).mark();
    for (let i = 0; i < 20_000; i++) p.int(i).int(i).tuple2();
    p.appends().longBinput(1);
    p.mark();
    for (let i = 0; i < 2000; i++) p.global('collections', 'OrderedDict').binget(0).tuple1().reduce();
    p.list().stop();
    const globals = new Map<string, unknown>([
      [
        'collections.OrderedDict',
        {
          qualname: 'collections.OrderedDict',
          call: (args: unknown[]) => new Map((args[0] as unknown[][]).map((pair) => [pair[0], pair[1]])),
        },
      ],
    ]);
    const t0 = performance.now();
    throwsUser(() => unpickle(p.toBuffer(), { globals, name: 'bomb.pkl' }), 'bomb.pkl', 'steps', 'per byte');
    assert.ok(performance.now() - t0 < 5000);
  });

  test('APPENDS of 300k items is fine (no spread into push)', () => {
    const p = new PickleWriter().proto(2).emptyList().mark();
    for (let i = 0; i < 300_000; i++) p.none();
    p.appends().stop();
    assert.equal((unpickle(p.toBuffer(), noGlobals) as unknown[]).length, 300_000);
  });
});

describe('.pth tensor sizes (finding 7)', () => {
  const t = (size: number[], stride: number[], storageNumel = 4): [string, PthTensor][] => [
    ['w', { storage: '0', storageType: 'FloatStorage', storageNumel, offset: 0, size, stride }],
  ];
  const storage = { '0': new Uint8Array(16) };

  test('a negative tensor size is a named error', () => {
    throwsUser(
      () => decodePth(torchZip(torchStateDictPickle(t([-1, 4], [4, 1])), storage), 'neg.pth'),
      'neg.pth',
      'negative',
    );
    throwsUser(() => decodePth(torchZip(torchStateDictPickle(t([-2, -2], [1, 1])), storage), 'neg.pth'), 'negative');
  });

  test('a broadcast view larger than its storage is refused before allocating', () => {
    throwsUser(
      () => decodePth(torchZip(torchStateDictPickle(t([100_000, 100_000], [0, 0])), storage), 'wide.pth'),
      'wide.pth',
      'more than its 4-element storage',
    );
  });
});

/**
 * A raw deflate stream of `mib` MiB of zeros built from one compressed MiB repeated: Z_FULL_FLUSH
 * resets the window, so each copy decodes on its own; a final empty stored block ends it.
 */
function zeroBomb(mib: number): Buffer {
  const chunk = zlib.deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: zlib.constants.Z_FULL_FLUSH, level: 9 });
  return Buffer.concat([...Array.from({ length: mib }, () => chunk), Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff])]);
}

/** A zip holding `body` (already deflated) under `name`, declaring `declared` bytes. */
function zipWithDeflated(
  entries: { name: string; data: Uint8Array; deflate?: boolean }[],
  bomb: { name: string; body: Buffer; declared: number },
): Buffer {
  // makeZip deflates itself; build with a placeholder and splice the bomb's body and sizes in.
  const placeholder = Buffer.alloc(1);
  const zip = makeZip([...entries, { name: bomb.name, data: placeholder }]);
  const nameBuf = Buffer.from(bomb.name);
  const local = zip.lastIndexOf(Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04])]));
  const cd = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), zip.lastIndexOf(nameBuf) - 46 - 10);
  const localHeader = Buffer.from(zip.subarray(local, local + 30 + nameBuf.length));
  localHeader.writeUInt16LE(8, 8);
  localHeader.writeUInt32LE(bomb.body.length, 18);
  localHeader.writeUInt32LE(bomb.declared >>> 0, 22);
  // Everything after this entry's data: its central record and the end record, with offsets shifted.
  const delta = bomb.body.length - placeholder.length;
  const tail = Buffer.from(zip.subarray(local + 30 + nameBuf.length + placeholder.length));
  const cdStart = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  // Patch the bomb's central record (the last one) and the end record's directory offset.
  const lastCd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  tail.writeUInt16LE(8, lastCd + 10);
  tail.writeUInt32LE(bomb.body.length, lastCd + 20);
  tail.writeUInt32LE(bomb.declared >>> 0, lastCd + 24);
  const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  tail.writeUInt32LE(cdStart + delta, eocd + 16);
  void cd;
  return Buffer.concat([zip.subarray(0, local), localHeader, bomb.body, tail]);
}

describe('zip entries inflate only as far as needed (finding 4)', () => {
  test('the bomb stream really is 1 MiB of zeros per copy', () => {
    assert.equal(zlib.inflateRawSync(zeroBomb(3)).length, 3 << 20);
  });

  test('a ~1 MB .pth whose storage entry declares 1 GiB is refused without inflating it', () => {
    const body = zeroBomb(1024);
    assert.ok(body.length < 1.2e6, `bomb is ${body.length} bytes`);
    const pkl = torchStateDictPickle([
      ['w', { storage: '0', storageType: 'FloatStorage', storageNumel: 4, offset: 0, size: [4], stride: [1] }],
    ]);
    const file = path.join(tmp, 'bomb.pth');
    fs.writeFileSync(
      file,
      zipWithDeflated([{ name: 'archive/data.pkl', data: pkl }], { name: 'archive/data/0', body, declared: 2 ** 30 }),
    );
    const r = parseBounded('pth', file);
    assertNamed(r, 'archive/data/0', 'declares 1073741824 bytes', 'more than the 16');
    assert.ok(r.maxRssMb < baseline() + 64, `peak RSS ${r.maxRssMb} MB vs a ${baseline()} MB baseline`);
  });

  test('a ~1 MB .npz whose entry declares 1 GiB stops at the archive ratio limit', () => {
    const body = zeroBomb(1024);
    const file = path.join(tmp, 'bomb.npz');
    fs.writeFileSync(file, zipWithDeflated([], { name: 'w.npy', body, declared: 2 ** 30 }));
    const r = parseBounded('npz', file);
    assertNamed(r, 'w.npy', `${MAX_INFLATE_RATIO} x the archive`);
    assert.ok(r.maxRssMb < baseline() + 64, `peak RSS ${r.maxRssMb} MB vs a ${baseline()} MB baseline`);
  });

  test('an entry that inflates past its declared size is named and cut at that size', () => {
    const body = zeroBomb(64);
    const zip = zipWithDeflated([], { name: 'x.npy', body, declared: 1000 });
    throwsUser(
      () => new ZipArchive(zip, 'liar.npz').read('x.npy'),
      'liar.npz',
      'x.npy',
      'inflates past its declared 1000 bytes',
    );
  });

  test('entries within the ratio still read, and the ratio is cumulative over the archive', () => {
    const ok = makeZip([{ name: 'a.npy', data: npy('<f4', [10_000], new Float32Array(10_000)), deflate: true }]);
    assert.equal(
      new ZipArchive(ok, 'ok.npz').read('a.npy').length,
      npy('<f4', [10_000], new Float32Array(10_000)).length,
    );
    // 40 entries of 1 MiB of zeros (~1 KB each compressed): each alone is under the limit, all together are not.
    const zeros = new Uint8Array(1 << 20);
    const many = makeZip(Array.from({ length: 40 }, (_, i) => ({ name: `e${i}`, data: zeros, deflate: true })));
    const limit = INFLATE_ALLOWANCE_BYTES + MAX_INFLATE_RATIO * many.length;
    assert.ok(zeros.length < limit && 40 * zeros.length > limit);
    const z = new ZipArchive(many, 'many.npz');
    let read = 0;
    throwsUser(() => z.entries.forEach((e) => (read += z.read(e).length)), 'many.npz', 'already inflated');
    assert.ok(read > 0 && read <= limit, `read ${read} bytes before the limit`);
  });
});

describe('image files are size-checked before they are read (finding 4)', () => {
  test('a 1.9 GB file named .jpg is refused from its size, not read whole', () => {
    const file = path.join(tmp, 'huge.jpg');
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, Buffer.from('not a jpeg at all'));
    fs.ftruncateSync(fd, 1_900_000_000); // sparse: no disk space used
    fs.closeSync(fd);
    for (const kind of ['sniff', 'image']) {
      const r = parseBounded(kind, file);
      assert.equal(r.ok, false);
      assert.equal(r.name, 'ImageError', `${kind}: ${r.name}: ${r.message}`);
      assert.match(r.message!, /file too large \(1900000000 bytes; an image file may hold at most 268435456 bytes/);
      assert.ok(r.maxRssMb < baseline() + 64, `${kind}: peak RSS ${r.maxRssMb} MB vs a ${baseline()} MB baseline`);
      assert.ok(r.ms < 2000, `${kind}: took ${r.ms} ms`);
    }
    assert.equal(MAX_IMAGE_FILE_BYTES, 256 * 1024 * 1024);
  });
});
