// MET on the WebGPU provider equals MET on the CPU provider (issue 12), with Mesa's lavapipe as
// the Vulkan driver (scripts/setup-webgpu.sh; CI runs it): a two-epoch `met train --device
// webgpu` on a small generated folder against the same run on the CPU.
// - The train step runs on WebGPU (onnxruntime's verbose log, MET_ORT_VERBOSE=1, places its
//   nodes there), and every step's loss equals the CPU's (relative 1e-4).
// - The trained tensors agree, and so does every exit's test accuracy (within 1 point).
// - The inference segments agree: the CPU run evaluated with --device webgpu gives the CPU's
//   confidences (1e-4) and the same predictions.
// Without .cache/mesa/env.sh it is skipped, unless MET_REQUIRE_WEBGPU=1 (CI), where it fails.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEMO_CLASSES, writeShapeFolder } from '../src/engine/demo/shapes';
import type { PredictionsFile, RunSummary } from '../src/engine/run/runFolder';
import { CLI, TINY_VIT } from './engine-ipc';
import { maxTensorDiff } from './helpers';
import { haveMesa, mesaEnv } from './mesa';

/** The Mesa environment, with 128-bit lanes: lavapipe compiles every shader with LLVM, and they
 *  halve that, with the same arithmetic. */
const lavapipeEnv = (): NodeJS.ProcessEnv => ({ ...mesaEnv(), LP_NATIVE_VECTOR_WIDTH: '128' });

function met(args: string[], env: NodeJS.ProcessEnv, cwd: string): { code: number; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env,
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 256 << 20,
  });
  return { code: r.status ?? -1, err: r.stderr };
}

const stepLosses = (run: string) =>
  fs
    .readFileSync(path.join(run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"type":"step"'))
    .map((l) => (JSON.parse(l) as { step: number; loss: number }).loss);

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);

test(
  'MET on WebGPU (lavapipe) equals MET on the CPU: train step, a two-epoch run, inference segments',
  { timeout: 600_000 },
  async (t) => {
    if (!haveMesa(t)) return;
    const env = lavapipeEnv();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-webgpu-parity-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const data = path.join(dir, 'shapes');
    await writeShapeFolder({ out: data, classes: DEMO_CLASSES.slice(0, 4), perClass: 15, seed: 12 });
    const flags = ['--data', data, '--weights', TINY_VIT, '--epochs', '2', '--batch', '8', '--threads', '1'];

    const cpu = path.join(dir, 'cpu');
    const c = met(['train', ...flags, '--device', 'cpu', '--out', cpu], env, dir);
    assert.equal(c.code, 0, c.err);
    const wg = path.join(dir, 'webgpu');
    const t0 = Date.now();
    const w = met(['train', ...flags, '--device', 'webgpu', '--out', wg], { ...env, MET_ORT_VERBOSE: '1' }, dir);
    assert.equal(
      w.code,
      0,
      w.err
        .split('\n')
        .filter((l) => !/\[[VI]:onnxruntime/.test(l))
        .slice(-20)
        .join('\n'),
    );
    t.diagnostic(`webgpu run: ${((Date.now() - t0) / 1000).toFixed(1)} s on lavapipe`);

    // The train step (the one graph of thousands of nodes) was placed on WebGPU.
    const placed = [...w.err.matchAll(/(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g)].map(
      (m) => [m[1], Number(m[2])] as const,
    );
    const biggest = placed.reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0] as readonly [string, number]);
    t.diagnostic(`placements: ${placed.map(([ep, n]) => `${n} on ${ep.replace('ExecutionProvider', '')}`).join(', ')}`);
    assert.equal(
      biggest[0],
      'WebGpuExecutionProvider',
      `the train step's ${biggest[1]} nodes were placed on ${biggest[0]}`,
    );
    assert.ok(biggest[1] > 1000, `the largest WebGPU graph has ${biggest[1]} nodes`);

    // Every step's loss (forward and loss on the GPU, parameters updated from its gradients).
    const lc = stepLosses(cpu);
    const lw = stepLosses(wg);
    assert.equal(lw.length, lc.length);
    const worst = Math.max(...lc.map((l, i) => rel(lw[i], l)));
    t.diagnostic(`${lc.length} steps, largest relative loss difference ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4, `step losses differ by ${worst} (relative)`);

    // The step was resident: AdamW ran in the graph; parameters and moments stayed on the GPU.
    assert.match(
      w.err,
      /device-resident step \(parameters and AdamW moments stay on the GPU\): [\d.]+ KiB to the device and [\d.]+ KiB back per step of 8/,
    );

    // The trained tensors: two epochs of AdamW on the GPU.
    const maxDiff = (run: string) =>
      maxTensorDiff(path.join(cpu, 'trainable.safetensors'), path.join(run, 'trainable.safetensors'));
    const maxAbs = maxDiff(wg);
    t.diagnostic(`trained tensors: largest absolute difference ${maxAbs.toExponential(2)}`);
    assert.ok(maxAbs < 1e-4, `trained tensors differ by ${maxAbs}`);

    // Stopped mid-run on the GPU (its checkpoint downloads the device's parameters and moments)
    // and resumed there (uploading them again): the same tensors.
    const cut = path.join(dir, 'webgpu-resumed');
    const p = spawn(process.execPath, [CLI, 'train', ...flags, '--device', 'webgpu', '--out', cut], {
      cwd: dir,
      env,
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    const metricsFile = path.join(cut, 'metrics.jsonl');
    for (const t1 = Date.now(); ;) {
      const n = fs.existsSync(metricsFile) ? fs.readFileSync(metricsFile, 'utf8').split('"type":"step"').length - 1 : 0;
      if (n >= 3) break;
      assert.ok(Date.now() - t1 < 240_000, 'the WebGPU run made fewer than 3 steps in 240 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    p.kill('SIGTERM');
    assert.equal(await exited, 130);
    const res = met(['train', '--resume', cut], env, dir);
    assert.equal(res.code, 0, res.err);
    const resumed = maxDiff(cut);
    t.diagnostic(
      `stopped after ${stepLosses(cut).length} steps' worth of log, resumed: largest difference ${resumed.toExponential(2)}`,
    );
    assert.ok(resumed < 1e-4, `the resumed WebGPU run's tensors differ by ${resumed}`);

    const sc = JSON.parse(fs.readFileSync(path.join(cpu, 'summary.json'), 'utf8')) as RunSummary;
    const sw = JSON.parse(fs.readFileSync(path.join(wg, 'summary.json'), 'utf8')) as RunSummary;
    for (const [j, e] of sc.exits.entries())
      assert.ok(
        Math.abs(e.accuracy - sw.exits[j].accuracy) <= 0.01,
        `exit ${e.exit}: ${e.accuracy} vs ${sw.exits[j].accuracy}`,
      );

    // Budgeted inference (met predict --run: samples leave at their exit, the rest go on to the
    // next segment) on WebGPU: the exits taken and the answers of the CPU.
    const images = fs
      .readdirSync(data, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.png'))
      .slice(0, 24)
      .map((f) => path.join(data, f));
    type Pred = {
      file: string;
      exit: number;
      class: string;
      confidence: number;
      exits: { exit: number; confidence: number }[];
    }[];
    const predict = (device: string): Pred => {
      const r = spawnSync(process.execPath, [CLI, 'predict', '--run', cpu, '--device', device, '--json', ...images], {
        cwd: dir,
        env,
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as Pred;
    };
    const dc = predict('cpu');
    const dw = predict('webgpu');
    // The thresholds are val images' confidences: such an image sits exactly on one, where a
    // difference in the last float bit decides whether it leaves. Those are told apart.
    const th = (
      JSON.parse(fs.readFileSync(path.join(cpu, 'thresholds.json'), 'utf8')) as {
        chosen: { thresholds: (number | null)[] };
      }
    ).chosen.thresholds;
    const onThreshold = (x: Pred[number]) =>
      x.exits.some((e, j) => typeof th[j] === 'number' && Math.abs(e.confidence - (th[j] as number)) < 1e-4);
    let ties = 0;
    for (const [i, x] of dc.entries()) {
      assert.equal(dw[i].file, x.file);
      for (const [j, e] of x.exits.entries())
        assert.ok(Math.abs(dw[i].exits[j].confidence - e.confidence) < 1e-4, `${x.file} exit ${j + 1}`);
      if (onThreshold(x)) {
        ties++;
        continue;
      }
      assert.deepEqual([dw[i].exit, dw[i].class], [x.exit, x.class], `${x.file}: the exit taken and the answer`);
    }
    t.diagnostic(
      `budgeted inference: ${dc.length} images, exits taken ${[...new Set(dc.map((x) => x.exit))].sort().join(', ')}, the same on both (${ties} on a threshold, where a float's last bit decides)`,
    );

    // The inference segments: the CPU run's own weights, evaluated on WebGPU.
    const again = path.join(dir, 'cpu-on-webgpu');
    fs.cpSync(cpu, again, { recursive: true });
    const ev = met(['eval', '--run', again, '--device', 'webgpu'], env, dir);
    assert.equal(ev.code, 0, ev.err);
    const pc = JSON.parse(fs.readFileSync(path.join(cpu, 'predictions.json'), 'utf8')) as PredictionsFile;
    const pw = JSON.parse(fs.readFileSync(path.join(again, 'predictions.json'), 'utf8')) as PredictionsFile;
    for (const split of ['val', 'test'] as const) {
      const conf = pc[split].conf.flatMap((row, j) => row.map((x, i) => Math.abs(x - pw[split].conf[j][i])));
      assert.ok(Math.max(...conf) < 1e-4, `${split}: confidences differ by ${Math.max(...conf)}`);
      assert.deepEqual(pw[split].pred, pc[split].pred, `${split}: predictions differ`);
    }
  },
);
