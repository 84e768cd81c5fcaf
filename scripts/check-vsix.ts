// Checks per-platform VSIXes: every native file inside (.node, .so, .dll, .dylib, and any other
// ELF / PE / Mach-O) is a binary of the package's platform and architecture, the platform's
// onnxruntime binding and sharp binding are there, and nothing of another platform is.
//
//   node --import tsx scripts/check-vsix.ts met-vscode-win32-x64-0.1.0.vsix [...]
//
// The target is read from the package's manifest (extension.vsixmanifest, TargetPlatform) and
// must match the file name's. Exit code 1 on any finding, each named.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ZipArchive } from '../src/engine/weights/zip';

export type BinaryFormat = 'elf' | 'pe' | 'macho';
export interface BinaryInfo {
  format: BinaryFormat;
  /** Node's names: x64, arm64, ia32, arm; or 'machine 0x…' for others. */
  arch: string;
}

const ELF_MACHINES: Record<number, string> = { 0x3e: 'x64', 0xb7: 'arm64', 0x03: 'ia32', 0x28: 'arm' };
const PE_MACHINES: Record<number, string> = { 0x8664: 'x64', 0xaa64: 'arm64', 0x014c: 'ia32', 0x01c4: 'arm' };
const MACHO_CPUS: Record<number, string> = { 0x01000007: 'x64', 0x0100000c: 'arm64', 0x07: 'ia32', 0x0c: 'arm' };

/** The format and architectures of a native binary, or null when the bytes are not one. A Mach-O
 *  universal ("fat") file lists every architecture it holds. */
export function binaryInfo(b: Uint8Array): BinaryInfo[] | null {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length >= 20 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46) {
    const little = b[5] === 1;
    const m = dv.getUint16(18, little);
    return [{ format: 'elf', arch: ELF_MACHINES[m] ?? `machine 0x${m.toString(16)}` }];
  }
  if (b.length >= 64 && b[0] === 0x4d && b[1] === 0x5a) {
    const pe = dv.getUint32(0x3c, true);
    if (pe + 6 <= b.length && dv.getUint32(pe, true) === 0x00004550) {
      const m = dv.getUint16(pe + 4, true);
      return [{ format: 'pe', arch: PE_MACHINES[m] ?? `machine 0x${m.toString(16)}` }];
    }
    return null;
  }
  if (b.length >= 8) {
    const magicLE = dv.getUint32(0, true);
    if (magicLE === 0xfeedfacf || magicLE === 0xfeedface) {
      const cpu = dv.getUint32(4, true);
      return [{ format: 'macho', arch: MACHO_CPUS[cpu] ?? `machine 0x${cpu.toString(16)}` }];
    }
    // Universal binaries are big-endian: 0xcafebabe, then the count and (cputype, ...) per arch.
    // (Java class files share the magic; their "count" is a version number far above 20.)
    if (dv.getUint32(0, false) === 0xcafebabe) {
      const n = dv.getUint32(4, false);
      if (n > 0 && n < 20 && 8 + n * 20 <= b.length)
        return Array.from({ length: n }, (_, i) => {
          const cpu = dv.getUint32(8 + i * 20, false);
          return { format: 'macho' as const, arch: MACHO_CPUS[cpu] ?? `machine 0x${cpu.toString(16)}` };
        });
    }
  }
  return null;
}

/** What a target's binaries must be. */
export function expectedBinary(target: string): BinaryInfo {
  const [os, arch] = target.split('-');
  return { format: os === 'win32' ? 'pe' : os === 'darwin' ? 'macho' : 'elf', arch };
}

const NATIVE_NAME = /\.(node|so(\.\d+)*|dll|dylib|exe)$/i;
const PLATFORM_DIRS =
  /(?:napi-v\d+\/(linux|win32|darwin)\/(x64|arm64|ia32|arm)\/|@img\/sharp-(?:libvips-)?((?:linux|linuxmusl|win32|darwin|wasm32)(?:-[a-z0-9]+)?)\/)/;

export interface VsixReport {
  file: string;
  target: string;
  natives: { name: string; info: string }[];
  problems: string[];
}

export function checkVsix(file: string): VsixReport {
  const zip = new ZipArchive(fs.readFileSync(file), path.basename(file));
  const manifest = zip.read('extension.vsixmanifest').toString('utf8');
  const target = /TargetPlatform="([^"]+)"/.exec(manifest)?.[1] ?? '(none)';
  const problems: string[] = [];
  if (!path.basename(file).includes(`-${target}-`))
    problems.push(`the manifest's TargetPlatform ${target} is not the one in the file name`);
  const want = expectedBinary(target);
  const natives: VsixReport['natives'] = [];
  for (const e of zip.entries) {
    if (e.name.endsWith('/')) continue;
    const where = PLATFORM_DIRS.exec(e.name);
    if (where) {
      const platform = where[1] ? `${where[1]}-${where[2]}` : where[3];
      if (platform !== target) problems.push(`${e.name}: a file of ${platform} in the ${target} package`);
    }
    // Every file is looked at, not just those named like binaries: a renamed library counts too.
    const head = zip.read(e, {}).subarray(0, 4096);
    const info = binaryInfo(head);
    if (!info) {
      if (NATIVE_NAME.test(e.name)) problems.push(`${e.name}: named like a native binary but is not ELF, PE or Mach-O`);
      continue;
    }
    const text = info.map((i) => `${i.format} ${i.arch}`).join(' + ');
    natives.push({ name: e.name, info: text });
    if (!info.every((i) => i.format === want.format && i.arch === want.arch))
      problems.push(`${e.name}: ${text}, not ${want.format} ${want.arch} (${target})`);
  }
  const [os, cpu] = target.split('-');
  const must = [
    `extension/node_modules/onnxruntime-node/bin/napi-v6/${os}/${cpu}/onnxruntime_binding.node`,
    `extension/node_modules/@img/sharp-${target}/lib/sharp-${target}.node`,
  ];
  for (const m of must) if (!zip.get(m)) problems.push(`${m} is missing`);
  return { file, target, natives, problems };
}

function main(files: string[]): number {
  if (!files.length) {
    console.error('usage: node --import tsx scripts/check-vsix.ts FILE.vsix [...]');
    return 2;
  }
  let bad = 0;
  for (const f of files) {
    const r = checkVsix(f);
    console.log(
      `${path.basename(f)}: ${r.target}, ${r.natives.length} native files (${[...new Set(r.natives.map((n) => n.info))].join(', ')})`,
    );
    for (const p of r.problems) console.log(`  problem: ${p}`);
    if (r.problems.length) bad++;
  }
  return bad ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(__filename))
  process.exitCode = main(process.argv.slice(2));
