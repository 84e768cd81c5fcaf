// `npm run bench`: ViT-B/16 at 224 on the CPU, the engine (onnxruntime-node) against PyTorch run
// side by side on the same machine, PyTorch configured at its best (OpenBLAS with AVX-512, see
// shared docs/architecture.md). Prints img/s, GFLOP/s as a share of the measured practical peak
// and the ratios. Options: --quick (fewer iterations), --no-torch, --threads N, --profile
// (onnxruntime per-op-type time for the engine's train step), --batches 8,32, --only
// forward,trainstep,met (some sections; default all), --device cpu|webgpu|cuda|dml (the engine's
// execution provider; on a GPU the PyTorch side is scripts/bench_torch_cuda.py, CUDA eager in
// fp32 and TF32, when python3 there has CUDA torch), --json-out FILE (the figures as JSON).
// scripts/gpu-bench.sh runs it on a bare Linux GPU machine.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { grad } from '../src/engine/graph/grad';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import type { VitConfig } from '../src/engine/model/config';
import { VitParams, vitForward } from '../src/engine/model/vit';
import { type DeviceTensor, Session } from '../src/engine/runtime/session';
import { type HostTensor, numel } from '../src/engine/tensor';
import { canonicalShapes } from '../src/engine/model/config';
import {
  decays,
  initMetParams,
  MET_DEFAULTS,
  type MetConfig,
  metForward,
  metLoss,
  MetTensors,
} from '../src/engine/model/met';
import { buildTrainStep, fusedAdamWScalars, residentHostState, residentStateKeys } from '../src/engine/train/trainer';
import { buildSegments, confidences, cumulativeGflops, SegmentRunner } from '../src/engine/infer/segments';
import { countMacs } from '../src/engine/infer/flops';
import { presetConfig } from '../src/engine/export/costs';
import { BACKBONE_PRESETS } from '../src/engine/infer/params';

const args = process.argv.slice(2);
const flag = (k: string) => args.includes(`--${k}`);
const opt = (k: string, d: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : d;
};
const QUICK = flag('quick');
const THREADS = Number(opt('threads', String(Math.min(os.cpus().length, 2))));
const BATCHES = opt('batches', '8,32').split(',').map(Number);
const ITERS = Number(opt('iters', QUICK ? '3' : '6'));
// Both sides run two untimed steps first: onnxruntime's arena and PyTorch's heap only reach their
// steady size during the first steps (measured: MET step at batch 16, 8.8 and 8.2 s, then 5.3 s
// every step after), and training runs thousands of steps.
const WARMUP = Number(opt('warmup', '2'));
const ONLY = new Set(opt('only', 'forward,trainstep,met').split(','));
const ROOT = path.resolve(__dirname, '..');
const DEVICE = opt('device', 'cpu') as 'cpu' | 'webgpu' | 'cuda' | 'dml';
if (!['cpu', 'webgpu', 'cuda', 'dml'].includes(DEVICE))
  throw new Error(`--device ${DEVICE}: expected cpu, webgpu, cuda or dml`);
const ON_CPU = DEVICE === 'cpu';
/** The execution providers of every session here (the CPU takes what the GPU provider lacks). */
const PROVIDERS: ('cpu' | 'webgpu' | 'cuda' | 'dml')[] = ON_CPU ? ['cpu'] : [DEVICE, 'cpu'];
/** The engine's graphs compiled as the trainer compiles them for this provider (CPU: with its contrib ops). */
const CPU = ON_CPU ? { cpuContribOps: true } : {};
/** Session options of every session here. */
const SO = { threads: THREADS, providers: PROVIDERS };

/** ViT-B/16 at 224 with an ImageNet-sized head: the standard preset (as `met params --backbone vit-b16`). */
export const VIT_B16: VitConfig = { ...presetConfig(BACKBONE_PRESETS['vit-b16']), numClasses: 1000 };

/** The "adapter-sized" trainable set of the plain train step (same as scripts/bench_torch.py). */
export function adapterSizedSet(cfg: VitConfig): string[] {
  const names = ['pos_embed', 'cls_token', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias'];
  for (let i = 0; i < cfg.depth; i++)
    for (const n of ['norm1', 'norm2']) names.push(`blocks.${i}.${n}.weight`, `blocks.${i}.${n}.bias`);
  return names;
}

function randomWeights(cfg: VitConfig, seed = 1): Map<string, HostTensor> {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const m = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(cfg)) {
    const n = numel(shape);
    const d = new Float32Array(n);
    const isNorm = /norm\d?\.weight$/.test(name);
    const scale = isNorm ? 0 : name.endsWith('bias') ? 0.02 : 0.04;
    for (let i = 0; i < n; i++) d[i] = (isNorm ? 1 : 0) + scale * next();
    m.set(name, { dtype: 'float32', shape, data: d });
  }
  return m;
}

/** Multiply-adds of one image's forward, and of the input-gradient backward of the blocks. */
export function vitMacs(cfg: VitConfig): { forward: number; backwardBlocks: number } {
  const n = (cfg.imageSize / cfg.patchSize) ** 2 + 1;
  const D = cfg.dim;
  const inner = cfg.heads * cfg.headDim;
  const lin = n * D * 3 * inner + n * inner * D + 2 * n * D * cfg.mlpDim; // qkv, proj, fc1, fc2
  const att = 2 * n * n * inner; // q@k^T and a@v
  const patch = (n - 1) * D * cfg.channels * cfg.patchSize ** 2;
  const forward = patch + cfg.depth * (lin + att) + D * cfg.numClasses;
  // Backward through frozen weights: one matmul per linear (dX = dY W^T), two per attention matmul.
  const backwardBlocks = cfg.depth * (lin + 2 * att) + D * cfg.numClasses;
  return { forward, backwardBlocks };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timeRuns(run: () => Promise<unknown>, iters: number, warmup = WARMUP): Promise<number> {
  for (let i = 0; i < warmup; i++) await run();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await run();
    ts.push(performance.now() - t0);
  }
  return median(ts) / 1000;
}

function rand(shape: number[], seed: number): HostTensor {
  let s = seed;
  const n = numel(shape);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    d[i] = (s / 4294967296) * 2 - 1;
  }
  return { dtype: 'float32', shape, data: d };
}

/** Practical peak: a 2048^3 float32 matmul through onnxruntime. */
async function matmulPeak(): Promise<number> {
  const N = 2048;
  const g = new Graph();
  const a = g.input('a', [N, N]);
  const b = g.constant(rand([N, N], 7), 'b');
  const s = await Session.create(compile(g, { c: g.matmul(a, b) }), SO);
  const feed = { a: rand([N, N], 3) };
  // Best of the runs: a peak is what the machine can do, not a typical run.
  for (let i = 0; i < 2; i++) await s.run(feed);
  let best = Infinity;
  for (let i = 0; i < (QUICK ? 4 : 8); i++) {
    const t0 = performance.now();
    await s.run(feed);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  await s.release();
  return (2 * N ** 3) / best / 1e9;
}

/** PyTorch's and numpy's best 2048^3 matmul (OpenBLAS at its best), when torch is there. */
function torchMatmulPeak(): number | undefined {
  if (flag('no-torch') || !fs.existsSync('/usr/bin/python3')) return undefined;
  const r = spawnSync(
    '/usr/bin/python3',
    [path.join(ROOT, 'scripts/bench_torch.py'), '--workload', 'matmul', '--threads', String(THREADS), '--json'],
    {
      encoding: 'utf8',
      env: { ...process.env, OPENBLAS_CORETYPE: 'SKYLAKEX', OMP_NUM_THREADS: String(THREADS) },
      timeout: 5 * 60 * 1000,
    },
  );
  const line = (r.stdout || '')
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  if (r.status !== 0 || !line) return undefined;
  const j = JSON.parse(line) as { torch_gflops_best?: number; numpy_gflops_best?: number };
  return Math.max(j.torch_gflops_best ?? 0, j.numpy_gflops_best ?? 0) || undefined;
}

interface Row {
  workload: string;
  batch: number;
  engine: number; // img/s
  torch?: number; // img/s (on a GPU: CUDA eager, fp32)
  torchTf32?: number; // img/s, CUDA eager with TF32 (GPU only)
  gflopPerImg: number;
}

const torchCudaCache = new Map<number, { workload: string; precision: string; img_per_s: number }[] | null>();

/**
 * PyTorch on the GPU (scripts/bench_torch_cuda.py, CUDA eager, fp32 and TF32) for the same
 * workload and batch, or undefined when python3 there has no CUDA torch. One run per batch.
 */
function runTorchCuda(workload: 'forward' | 'met-trainstep', batch: number): { fp32?: number; tf32?: number } {
  if (flag('no-torch')) return {};
  if (!torchCudaCache.has(batch)) {
    const py = process.env.MET_BENCH_PYTHON ?? 'python3';
    const r = spawnSync(
      py,
      [
        path.join(ROOT, 'scripts/bench_torch_cuda.py'),
        '--batch',
        String(batch),
        '--iters',
        String(Math.max(5, ITERS)),
        '--warmup',
        String(Math.max(2, WARMUP)),
        '--json',
      ],
      { encoding: 'utf8', timeout: 20 * 60 * 1000 },
    );
    const recs = (r.stdout || '')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { workload: string; precision: string; img_per_s: number; error?: string });
    if (r.status !== 0 || recs.some((x) => x.error)) {
      const why =
        recs.find((x) => x.error)?.error ??
        (r.error?.message || (r.stderr || '').trim().split('\n').slice(-2).join(' | '));
      console.log(`  (PyTorch CUDA side not run: ${why})`);
      torchCudaCache.set(batch, null);
    } else torchCudaCache.set(batch, recs);
  }
  const recs = torchCudaCache.get(batch);
  const find = (p: string) => recs?.find((x) => x.workload === workload && x.precision === p)?.img_per_s;
  return { fp32: find('fp32'), tf32: find('tf32') };
}

function runTorch(
  workload: string,
  batch: number,
  script = 'scripts/bench_torch.py',
  extra: string[] = [],
): number | undefined {
  if (flag('no-torch')) return undefined;
  // On a GPU the comparison is PyTorch on that GPU (runTorchCuda), not on the CPU.
  if (!ON_CPU)
    return workload === 'forward' || workload === 'met-trainstep' ? runTorchCuda(workload, batch).fp32 : undefined;
  const py = '/usr/bin/python3';
  if (!fs.existsSync(py)) return undefined;
  const r = spawnSync(
    py,
    [
      path.join(ROOT, script),
      '--workload',
      workload,
      '--batch',
      String(batch),
      '--threads',
      String(THREADS),
      '--iters',
      String(Math.max(3, ITERS - 2)),
      '--warmup',
      String(WARMUP),
      '--json',
      ...extra,
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, OPENBLAS_CORETYPE: 'SKYLAKEX', OMP_NUM_THREADS: String(THREADS) },
      timeout: 20 * 60 * 1000,
    },
  );
  if (r.status !== 0) {
    const msg = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
    console.log(`  (PyTorch side not run: ${msg || 'exit ' + r.status})`);
    return undefined;
  }
  const lines = r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'));
  const j = JSON.parse(lines[lines.length - 1]);
  if (j.warning) console.log(`  (PyTorch: ${j.warning})`);
  return j.img_per_s as number;
}

/**
 * Where the time goes: runs the model under onnxruntime's profiler and sums the kernel time of
 * each op type (the trace is Chrome-trace JSON with one event per node run) over the last two
 * runs only. The first runs of a fresh session touch new arena memory: about 900,000 page faults
 * and 11-13 s of system time per run for the MET step at batch 32, which made large elementwise
 * ops look up to 30x slower than they are in steady state (measured: an Add of [32, 203, 3072]
 * and [3072], 243 ms in the first two runs, 8 ms after).
 */
async function profileModel(model: ReturnType<typeof compile>, feeds: Record<string, HostTensor>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-prof-'));
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const s = await Session.create(model, { threads: THREADS, profilePrefix: 'trace' });
    for (let i = 0; i < WARMUP + 2; i++) await s.run(feeds);
    s.endProfiling();
    await s.release();
  } finally {
    process.chdir(cwd);
  }
  const file = fs.readdirSync(dir).find((f) => f.startsWith('trace') && f.endsWith('.json'));
  if (!file) return void console.log('  (no profile written)');
  const events = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as {
    cat: string;
    name: string;
    ts: number;
    dur: number;
    args?: { op_name?: string };
  }[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const from = runs.length >= 2 ? runs[runs.length - 2].ts : 0;
  const byOp = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name || e.ts < from) continue;
    byOp.set(e.args.op_name, (byOp.get(e.args.op_name) ?? 0) + e.dur);
    total += e.dur;
  }
  console.log(
    `  onnxruntime kernel time by op type (the last 2 of ${runs.length} runs; steps: ${runs.map((r) => (r.dur / 1000).toFixed(0)).join(', ')} ms):`,
  );
  for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 14))
    console.log(
      `    ${op.padEnd(28)} ${(us / 2000).toFixed(0).padStart(7)} ms/run  ${((100 * us) / total).toFixed(1).padStart(5)}%`,
    );
  fs.rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const cfg = VIT_B16;
  const macs = vitMacs(cfg);
  console.log(
    `MET engine benchmark: ViT-B/16 @224, ${THREADS} threads, onnxruntime-node ${ON_CPU ? 'CPU' : `${DEVICE} (then the CPU for what it lacks)`}${QUICK ? ' (quick)' : ''}`,
  );
  const ortPeak = await matmulPeak();
  const torchPeak = ON_CPU ? torchMatmulPeak() : undefined;
  const peak = Math.max(ortPeak, torchPeak ?? 0);
  console.log(
    `practical peak: best 2048^3 float32 matmul, onnxruntime ${ortPeak.toFixed(0)} GFLOP/s${torchPeak ? `, PyTorch/numpy (OpenBLAS) ${torchPeak.toFixed(0)} GFLOP/s` : ''}; using ${peak.toFixed(0)} GFLOP/s`,
  );
  const weights = randomWeights(cfg);
  const rows: Row[] = [];

  // Forward.
  if (ONLY.has('forward')) {
    const g = new Graph();
    const P = new VitParams(g, weights);
    const x = g.input('images', ['B', 3, 224, 224]);
    const { logits } = vitForward(P, cfg, x);
    const s = await Session.create(compile(g, { logits: logits! }, CPU), SO);
    for (const B of BATCHES.slice(0, 1)) {
      const feed = { images: rand([B, 3, 224, 224], 11) };
      const sec = await timeRuns(() => s.run(feed), ITERS);
      rows.push({
        workload: 'forward',
        batch: B,
        engine: B / sec,
        torch: runTorch('forward', B),
        gflopPerImg: (2 * macs.forward) / 1e9,
      });
      if (flag('profile')) {
        console.log(`forward, batch ${B}:`);
        await profileModel(compile(g, { logits: logits! }, CPU), feed);
      }
    }
    await s.release();
  }

  // Frozen-backbone train step: forward + gradients of the adapter-sized set only.
  if (ONLY.has('trainstep')) {
    const names = adapterSizedSet(cfg);
    const g = new Graph();
    const P = new VitParams(g, weights, new Set(names));
    const x = g.input('images', ['B', 3, 224, 224]);
    const labels = g.input('labels', ['B'], 'int64');
    const { logits } = vitForward(P, cfg, x);
    const loss = g.crossEntropy(logits!, labels);
    const params = names.map((n) => P.get(n));
    const grads = grad(loss, params);
    const outs: Record<string, Tensor> = { loss };
    names.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
    const model = compile(g, outs, CPU);
    const trainable = names.reduce((k, n) => k + numel(weights.get(n)!.shape), 0);
    console.log(
      `train step: ${trainable.toLocaleString()} trainable values (${((100 * trainable) / [...weights.values()].reduce((k, t) => k + numel(t.shape), 0)).toFixed(2)}% of the weights), ${model.nodeCount} ONNX nodes`,
    );
    const s = await Session.create(model, SO);
    for (const B of BATCHES) {
      const feeds: Record<string, HostTensor> = {
        images: rand([B, 3, 224, 224], 5),
        labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from({ length: B }, (_, i) => BigInt(i % 1000)) },
      };
      for (const n of names) feeds[n] = weights.get(n)!;
      const sec = await timeRuns(() => s.run(feeds), Math.max(3, Math.round(ITERS * (8 / B))));
      rows.push({
        workload: 'trainstep',
        batch: B,
        engine: B / sec,
        torch: runTorch('trainstep', B),
        gflopPerImg: (2 * (macs.forward + macs.backwardBlocks)) / 1e9,
      });
      if (flag('profile') && B === BATCHES[0]) {
        console.log(`train step, batch ${B}:`);
        await profileModel(model, feeds);
      }
    }
    await s.release();
  }

  if (!flag('no-met') && ONLY.has('met')) await metSection(weights, rows);

  if (!ON_CPU)
    for (const r of rows)
      if (r.workload === 'forward' || r.workload === 'met-trainstep')
        r.torchTf32 = runTorchCuda(r.workload, r.batch).tf32;
  console.log('');
  console.log(
    `workload         batch   engine img/s  GFLOP/s (%peak)   PyTorch img/s  GFLOP/s (%peak)   engine/PyTorch${ON_CPU ? '' : '   PyTorch TF32 img/s   engine/TF32'}`,
  );
  for (const r of rows) {
    const eg = r.engine * r.gflopPerImg;
    const tg = r.torch !== undefined ? r.torch * r.gflopPerImg : undefined;
    console.log(
      [
        r.workload.padEnd(15),
        String(r.batch).padStart(5),
        r.engine.toFixed(2).padStart(14),
        `${eg.toFixed(0)} (${((100 * eg) / peak).toFixed(0)}%)`.padStart(17),
        (r.torch !== undefined ? r.torch.toFixed(2) : 'n/a').padStart(15),
        (tg !== undefined ? `${tg.toFixed(0)} (${((100 * tg) / peak).toFixed(0)}%)` : 'n/a').padStart(17),
        (r.torch !== undefined ? `${(r.engine / r.torch).toFixed(2)}x` : 'n/a').padStart(16),
        ...(ON_CPU
          ? []
          : [
              (r.torchTf32 !== undefined ? r.torchTf32.toFixed(2) : 'n/a').padStart(20),
              (r.torchTf32 !== undefined ? `${(r.engine / r.torchTf32).toFixed(2)}x` : 'n/a').padStart(13),
            ]),
      ].join(' '),
    );
  }
  const jsonOut = opt('json-out', '');
  if (jsonOut) {
    fs.writeFileSync(
      jsonOut,
      JSON.stringify(
        {
          device: DEVICE,
          providers: PROVIDERS,
          threads: THREADS,
          peakGflops: peak,
          host: os.hostname(),
          cpus: os.cpus()[0]?.model,
          rows: rows.map((r) => ({
            ...r,
            ratio: r.torch !== undefined ? r.engine / r.torch : null,
            ratioTf32: r.torchTf32 !== undefined ? r.engine / r.torchTf32 : null,
          })),
        },
        null,
        1,
      ),
    );
    console.log(`figures written to ${jsonOut}`);
  }
  console.log(
    `\nGFLOP per image: forward ${((2 * macs.forward) / 1e9).toFixed(2)}, train step ${((2 * (macs.forward + macs.backwardBlocks)) / 1e9).toFixed(2)} (2 FLOPs per multiply-add)`,
  );
}

/**
 * MET on ViT-B/16: the train step (7 exits after layers 6..12, r 8, 100 classes, batch 32)
 * against the PyTorch reference of the same step, its wall-time overhead over the plain
 * frozen-backbone step (one head + pos_embed trainable) next to its FLOP overhead, and budgeted
 * inference that drops exited samples against running every sample to the last exit.
 */
async function metSection(weights: Map<string, HostTensor>, rows: Row[]): Promise<void> {
  const cfg = VIT_B16;
  const B = Number(opt('met-batch', '32'));
  const C = 100;
  const met: MetConfig = { ...MET_DEFAULTS, exits: [6, 7, 8, 9, 10, 11, 12], rank: 8, lambda: 0.01, numClasses: C };
  const metInit = initMetParams(cfg, met, 0);
  const feedsBase: Record<string, HostTensor> = {
    images: rand([B, 3, 224, 224], 21),
    labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from({ length: B }, (_, i) => BigInt(i % C)) },
  };
  // Plain frozen-backbone step: a 100-class head on LN_f(cls), gradients for the head and pos_embed.
  const plainW = new Map(weights);
  plainW.set('head.weight', rand([C, 768], 3));
  plainW.set('head.bias', rand([C], 4));
  const plainNames = ['pos_embed', 'head.weight', 'head.bias'];
  let plainMacs = 0;
  let plainSec = 0;
  {
    const g = new Graph();
    const P = new VitParams(g, plainW, new Set(plainNames));
    const x = g.input('images', ['B', 3, 224, 224]);
    const labels = g.input('labels', ['B'], 'int64');
    const { logits } = vitForward(P, cfg, x);
    const loss = g.crossEntropy(logits!, labels);
    const grads = grad(
      loss,
      plainNames.map((n) => P.get(n)),
    );
    const outs: Record<string, Tensor> = { loss };
    plainNames.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
    plainMacs = countMacs(Object.values(outs), B);
    const s = await Session.create(compile(g, outs, CPU), SO);
    const feeds = { ...feedsBase };
    for (const n of plainNames) feeds[n] = plainW.get(n)!;
    plainSec = await timeRuns(() => s.run(feeds), Math.max(3, ITERS - 2));
    await s.release();
    rows.push({
      workload: 'plain-trainstep',
      batch: B,
      engine: B / plainSec,
      torch: runTorch('plain-trainstep', B, 'scripts/bench_torch_met.py'),
      gflopPerImg: (2 * plainMacs) / B / 1e9,
    });
  }
  // MET train step.
  // On a GPU the step is the trainer's resident one: AdamW in the graph, parameters and moments
  // kept on the device between steps (only the batch goes up, the loss and logits come back).
  const adamW = ON_CPU ? undefined : { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, decay: decays };
  const { model, names: metNames } = buildTrainStep(cfg, weights, met, metInit, {
    cpuOnly: ON_CPU,
    batch: ON_CPU ? B : undefined,
    adamW,
  });
  let metMacs = 0;
  {
    // Count the MACs of the same graph (forward + gradients).
    const g = new Graph();
    const P = new VitParams(g, weights);
    const T = new MetTensors(g, metInit, true);
    const x = g.input('images', ['B', 3, 224, 224]);
    const y = g.input('labels', ['B'], 'int64');
    const f = metForward(g, P, T, cfg, met, x);
    const L = metLoss(g, met, f, y);
    const gr = grad(
      L.loss,
      [...metInit.keys()].map((n) => T.get(n)),
    );
    metMacs = countMacs([L.loss, ...gr, ...f.logits], B);
  }
  const stateKeys = adamW ? residentStateKeys(metNames) : [];
  const s = await Session.create(model, adamW ? { ...SO, deviceOutputs: stateKeys.map((k) => `new.${k}`) } : SO);
  const feeds: Record<string, HostTensor> = { ...feedsBase };
  for (const [n, t] of metInit) feeds[n] = t;
  let metSec: number;
  if (adamW) {
    let state: Record<string, HostTensor | DeviceTensor> = residentHostState(
      metInit,
      new Map([...metInit].map(([n, t]) => [n, t.data as Float32Array])),
    );
    let t = 0;
    metSec = await timeRuns(
      async () => {
        t++;
        const { device } = await s.runMixed({
          ...feedsBase,
          ...state,
          ...fusedAdamWScalars(1e-3, t, adamW),
        });
        const next = Object.fromEntries(stateKeys.map((k) => [k, device[`new.${k}`]]));
        for (const v of Object.values(state)) if ('device' in v) v.device.dispose();
        state = next;
      },
      Math.max(3, ITERS - 2),
    );
  } else metSec = await timeRuns(() => s.run(feeds), Math.max(3, ITERS - 2));
  await s.release();
  if (flag('profile')) {
    console.log(`MET train step, batch ${B}:`);
    await profileModel(model, feeds);
  }
  rows.push({
    workload: 'met-trainstep',
    batch: B,
    engine: B / metSec,
    torch: runTorch('met-trainstep', B, 'scripts/bench_torch_met.py'),
    gflopPerImg: (2 * metMacs) / B / 1e9,
  });
  const flopOver = metMacs / plainMacs - 1;
  const wallOver = metSec / plainSec - 1;
  console.log(
    `MET over the plain frozen-backbone step (batch ${B}): FLOPs ${(100 * flopOver).toFixed(1)}%, wall time ${(100 * wallOver).toFixed(1)}% (target: at most FLOPs + 10 points: ${wallOver <= flopOver + 0.1 ? 'met' : 'missed'})`,
  );

  // Budgeted inference with batch shrinking, against every sample to the last exit.
  const segs = buildSegments(cfg, met, weights, metInit, true, ON_CPU);
  const gfl = cumulativeGflops(segs);
  const runner = await SegmentRunner.create(segs, C, null, SO);
  const nb = Number(opt('dyn-batch', '64'));
  const imgs = rand([nb, 3, 224, 224], 33);
  // Untrained heads give near-uniform confidences; pick thresholds at quantiles of each exit's
  // confidence so a known share of the batch leaves at each exit (as trained thresholds would).
  const all = await runner.allExits(imgs);
  const share = [0.3, 0.15, 0.15, 0.1, 0.1, 0.1];
  const thresholds: number[] = [];
  let remaining = Array.from({ length: nb }, (_, i) => i);
  for (let j = 0; j < all.probs.length - 1; j++) {
    const { conf } = confidences(all.probs[j], C);
    const cs = remaining.map((i) => conf[i]).sort((a, b) => b - a);
    const take = Math.min(cs.length, Math.round(share[j] * nb));
    const T = take > 0 ? cs[take - 1] : Infinity;
    thresholds.push(T);
    remaining = remaining.filter((i) => conf[i] < T);
  }
  thresholds.push(-Infinity);
  const tStatic = await timeRuns(() => runner.allExits(imgs), 2, 0);
  let exitOf: Int32Array = new Int32Array(0);
  const tDyn = await timeRuns(async () => (exitOf = (await runner.dynamic(imgs, thresholds)).exitOf), 2, 0);
  await runner.release();
  const counts = gfl.map((_, j) => exitOf.filter((e) => e === j).length);
  const expected = counts.reduce((a, c, j) => a + c * gfl[j], 0) / nb;
  console.log(
    `budgeted inference, ${nb} images: exits taken ${counts.join('/')}; expected ${expected.toFixed(2)} GFLOPs/img vs ${gfl[gfl.length - 1].toFixed(2)} to the last exit (${((100 * expected) / gfl[gfl.length - 1]).toFixed(0)}%); wall time ${((tDyn * 1000) / nb).toFixed(0)} vs ${((tStatic * 1000) / nb).toFixed(0)} ms/img (${((100 * tDyn) / tStatic).toFixed(0)}%)`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
