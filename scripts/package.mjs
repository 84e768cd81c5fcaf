// One VSIX per platform (`vsce package --target`), each carrying exactly its platform's native
// binaries: onnxruntime-node's binding and runtime for that os/cpu (its npm package holds all
// five; about 250 MB together) and sharp's @img/sharp-<target> (+ libvips) package.
//
//   node scripts/package.mjs                 the current platform's (npm run package)
//   node scripts/package.mjs --all           all five (npm run package:all), from any clone
//   node scripts/package.mjs --target win32-x64 [--target ...] [--out DIR]
//   node scripts/package.mjs -o FILE.vsix    one target (the current one, or --target), to FILE
//
// The files come from .vscodeignore, written for linux-x64; for another target its platform
// lines are rewritten (a temporary ignore file given to vsce --ignoreFile). sharp installs only
// the current platform's @img packages, so the others are fetched once with `npm pack` (the npm
// registry; cached in .cache/npm-packs/) and put into node_modules/@img/ for the build, then
// removed: vsce takes dependencies from `npm list --production`, which lists sharp's optional
// @img packages that are present. Prints each package's size.

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
export const TARGETS = ['linux-x64', 'linux-arm64', 'win32-x64', 'win32-arm64', 'darwin-arm64'];

/**
 * sharp's native packages for a target: its binding, and libvips where it is a package of its own.
 * @param {string} target
 * @returns {string[]}
 */
export function sharpPackages(target) {
  return target.startsWith('win32')
    ? [`@img/sharp-${target}`]
    : [`@img/sharp-${target}`, `@img/sharp-libvips-${target}`];
}

/** @param {string} file */
function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/**
 * .vscodeignore with its linux-x64 lines rewritten for `target`.
 * @param {string} target
 */
export function ignoreFor(target) {
  const [os, cpu] = target.split('-');
  const text = fs.readFileSync(path.join(ROOT, '.vscodeignore'), 'utf8');
  const out = text
    .replace(/napi-v6\/linux\/x64/g, `napi-v6/${os}/${cpu}`)
    .replace(/@img\/sharp-libvips-linux-x64\/\*\*/g, `@img/sharp-libvips-${target}/**`)
    .replace(/@img\/sharp-linux-x64\/\*\*/g, `@img/sharp-${target}/**`);
  for (const p of sharpPackages(target))
    if (!out.includes(`!node_modules/${p}/**`)) throw new Error(`.vscodeignore: no line for ${p}`);
  return out;
}

/**
 * The tarball of name@version from the npm registry, downloaded once into .cache/npm-packs/
 * (also used by test/arm64-qemu.test.ts for Node for arm64). Returns its path.
 * @param {string} name
 * @param {string} version
 * @returns {string}
 */
export function npmPack(name, version) {
  const cache = path.join(ROOT, '.cache', 'npm-packs');
  fs.mkdirSync(cache, { recursive: true });
  const tgz = path.join(cache, `${name.replace('@', '').replace('/', '-')}-${version}.tgz`);
  if (!fs.existsSync(tgz)) {
    console.error(`fetching ${name}@${version} from the npm registry`);
    const out = execFileSync(
      'npm',
      ['pack', `${name}@${version}`, '--pack-destination', cache, '--json', '--loglevel=error'],
      { cwd: cache, encoding: 'utf8' },
    );
    const file = path.join(cache, JSON.parse(out)[0].filename);
    if (file !== tgz) fs.renameSync(file, tgz);
  }
  return tgz;
}

/**
 * Puts a package (name@version) into node_modules from the npm registry (cached); returns its folder.
 * @param {string} name
 * @param {string} version
 */
function fetchPackage(name, version) {
  const dest = path.join(ROOT, 'node_modules', name);
  const tgz = npmPack(name, version);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1']);
  return dest;
}

/**
 * @param {string} target
 * @param {string} outDir
 * @param {string} [outFile]
 */
function packageTarget(target, outDir, outFile) {
  const pkg = readJson(path.join(ROOT, 'package.json'));
  const sharp = readJson(path.join(ROOT, 'node_modules', 'sharp', 'package.json'));
  const added = [];
  for (const p of sharpPackages(target)) {
    const dir = path.join(ROOT, 'node_modules', p);
    const want = sharp.optionalDependencies[p];
    if (!want) throw new Error(`sharp ${sharp.version} has no package ${p}`);
    if (fs.existsSync(dir) && readJson(path.join(dir, 'package.json')).version === want) continue;
    fetchPackage(p, want);
    added.push(dir);
  }
  const ignoreFile = path.join(ROOT, '.cache', `vscodeignore-${target}`);
  fs.mkdirSync(path.dirname(ignoreFile), { recursive: true });
  fs.writeFileSync(ignoreFile, ignoreFor(target));
  const out = outFile ?? path.join(outDir, `${pkg.name}-${target}-${pkg.version}.vsix`);
  try {
    const vsce = path.join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
    const r = spawnSync(
      process.execPath,
      [
        vsce,
        'package',
        '--target',
        target,
        '--ignoreFile',
        ignoreFile,
        '--out',
        out,
        '--allow-missing-repository',
        '--skip-license',
        '--no-rewrite-relative-links',
      ],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, MET_PACKAGE_TARGET: target } },
    );
    if (r.status !== 0) throw new Error(`vsce package --target ${target} failed (${r.status ?? r.signal})`);
  } finally {
    // node_modules is left as npm ci made it.
    for (const d of added) fs.rmSync(d, { recursive: true, force: true });
  }
  return out;
}

function currentTarget() {
  const t = `${process.platform}-${process.arch}`;
  if (!TARGETS.includes(t)) throw new Error(`no VSIX target for ${t}; give --target (one of ${TARGETS.join(', ')})`);
  return t;
}

async function main() {
  const argv = process.argv.slice(2);
  const targets = [];
  let outDir = ROOT;
  /** @type {string | undefined} */
  let outFile;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--all') targets.push(...TARGETS);
    else if (argv[i] === '--target') targets.push(argv[++i]);
    else if (argv[i] === '--out') outDir = path.resolve(argv[++i]);
    else if (argv[i] === '-o') outFile = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]} (use --all, --target T, --out DIR, -o FILE)`);
  }
  if (!targets.length) targets.push(currentTarget());
  for (const t of targets)
    if (!TARGETS.includes(t)) throw new Error(`unknown target ${t} (one of ${TARGETS.join(', ')})`);
  if (outFile && new Set(targets).size > 1) throw new Error('-o FILE names one package; use --out DIR for several');
  fs.mkdirSync(outDir, { recursive: true });
  /** @type {[string, string, number][]} */
  const rows = [];
  for (const t of [...new Set(targets)]) {
    const file = packageTarget(t, outDir, outFile);
    rows.push([t, path.relative(process.cwd(), file) || file, fs.statSync(file).size]);
  }
  console.log('\ntarget         size      file');
  for (const [t, f, size] of rows) console.log(`${t.padEnd(14)} ${(size / 1048576).toFixed(1).padStart(6)} MB  ${f}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname))
  main().catch((e) => {
    console.error(`error: ${e.message}`);
    process.exit(1);
  });
