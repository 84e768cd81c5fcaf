// Per-platform packages (issue 12): the binary checker that CI runs on every VSIX
// (scripts/check-vsix.ts), checked on the real onnxruntime-node binaries of all five platforms
// (its npm package holds them all) and on small VSIX-shaped zips with a foreign or a missing
// binary; and the per-target file lists (scripts/package.mjs's .vscodeignore rewrite).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { binaryInfo, checkVsix, expectedBinary } from '../scripts/check-vsix';
import { crc32 } from '../src/engine/weights/zip';

const ROOT = path.resolve(__dirname, '..');
const ORT_BIN = path.join(ROOT, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
const TARGETS = ['linux-x64', 'linux-arm64', 'win32-x64', 'win32-arm64', 'darwin-arm64'];

/** The first 64 KiB of a file: enough for any header. */
function head(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(Math.min(65536, fs.fstatSync(fd).size));
    fs.readSync(fd, b, 0, b.length, 0);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** onnxruntime's binding for a target, from onnxruntime-node's package. */
const binding = (target: string) => path.join(ORT_BIN, ...target.split('-'), 'onnxruntime_binding.node');

test("the checker reads each platform's real onnxruntime binding as that platform's binary", () => {
  for (const t of TARGETS) {
    const info = binaryInfo(head(binding(t)));
    assert.deepEqual(info, [expectedBinary(t)], `${t}: ${JSON.stringify(info)}`);
  }
  assert.deepEqual(expectedBinary('win32-arm64'), { format: 'pe', arch: 'arm64' });
  assert.equal(binaryInfo(Buffer.from('{"not": "a binary"}')), null);
  // A Java class file shares the Mach-O universal magic; its "architecture count" gives it away.
  assert.equal(binaryInfo(Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0x34, ...new Array(64).fill(0)])), null);
});

/** A stored (uncompressed) zip of `files`, as vsce writes a VSIX (the central directory is what is read). */
function zip(files: Record<string, Buffer>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(Object.keys(files).length, 8);
  eocd.writeUInt16LE(Object.keys(files).length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

function vsix(target: string, extra: Record<string, Buffer> = {}, drop: string[] = []): string {
  const [os_, cpu] = target.split('-');
  const files: Record<string, Buffer> = {
    'extension.vsixmanifest': Buffer.from(
      `<PackageManifest><Metadata><Identity TargetPlatform="${target}"/></Metadata></PackageManifest>`,
    ),
    'extension/package.json': Buffer.from('{}'),
    [`extension/node_modules/onnxruntime-node/bin/napi-v6/${os_}/${cpu}/onnxruntime_binding.node`]: head(
      binding(target),
    ),
    [`extension/node_modules/@img/sharp-${target}/lib/sharp-${target}.node`]: head(binding(target)),
    ...extra,
  };
  for (const d of drop) delete files[d];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-vsix-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, `met-vscode-${target}-0.0.0.vsix`);
  fs.writeFileSync(file, zip(files));
  return file;
}

test('a VSIX with only its own platform passes; a foreign binary, a foreign folder or a missing binding is named', () => {
  for (const t of TARGETS) assert.deepEqual(checkVsix(vsix(t)).problems, [], t);

  // A Windows DLL hidden under a neutral name in the Linux package.
  const foreign = checkVsix(vsix('linux-x64', { 'extension/dist/helper.bin': head(binding('win32-x64')) }));
  assert.deepEqual(foreign.problems, ['extension/dist/helper.bin: pe x64, not elf x64 (linux-x64)']);
  // The right format, the wrong architecture.
  const arm = checkVsix(vsix('linux-x64', { 'extension/lib/x.so': head(binding('linux-arm64')) }));
  assert.deepEqual(arm.problems, ['extension/lib/x.so: elf arm64, not elf x64 (linux-x64)']);
  // Another platform's folder, even for a file that is not a binary.
  const folder = checkVsix(
    vsix('darwin-arm64', { 'extension/node_modules/onnxruntime-node/bin/napi-v6/win32/x64/LICENSE': Buffer.from('x') }),
  );
  assert.deepEqual(folder.problems, [
    'extension/node_modules/onnxruntime-node/bin/napi-v6/win32/x64/LICENSE: a file of win32-x64 in the darwin-arm64 package',
  ]);
  const sharpless = checkVsix(
    vsix('win32-arm64', {}, ['extension/node_modules/@img/sharp-win32-arm64/lib/sharp-win32-arm64.node']),
  );
  assert.deepEqual(sharpless.problems, [
    'extension/node_modules/@img/sharp-win32-arm64/lib/sharp-win32-arm64.node is missing',
  ]);
  // A library that is named like one but is not a binary at all.
  const fake = checkVsix(vsix('linux-arm64', { 'extension/lib/libfake.so.1': Buffer.from('not elf') }));
  assert.deepEqual(fake.problems, [
    'extension/lib/libfake.so.1: named like a native binary but is not ELF, PE or Mach-O',
  ]);
});

test("package.mjs: each target's file list names its own binaries in place of linux-x64's", async () => {
  const { ignoreFor, sharpPackages, TARGETS: all } = await import('../scripts/package.mjs');
  assert.deepEqual(all, TARGETS);
  assert.equal(ignoreFor('linux-x64'), fs.readFileSync(path.join(ROOT, '.vscodeignore'), 'utf8'));
  for (const t of TARGETS) {
    const text = ignoreFor(t);
    const [os_, cpu] = t.split('-');
    assert.ok(text.includes(`!node_modules/onnxruntime-node/bin/napi-v6/${os_}/${cpu}/**`), t);
    for (const p of sharpPackages(t)) assert.ok(text.includes(`!node_modules/${p}/**`), `${t}: ${p}`);
    for (const other of TARGETS.filter((x) => x !== t)) {
      assert.ok(!text.includes(`napi-v6/${other.replace('-', '/')}/`), `${t} lists ${other}'s onnxruntime`);
      assert.ok(!text.includes(`@img/sharp-${other}/`), `${t} lists ${other}'s sharp`);
    }
  }
  // Windows has libvips inside sharp's package; the others have it apart.
  assert.deepEqual(sharpPackages('win32-x64'), ['@img/sharp-win32-x64']);
  assert.deepEqual(sharpPackages('darwin-arm64'), ['@img/sharp-darwin-arm64', '@img/sharp-libvips-darwin-arm64']);
});
