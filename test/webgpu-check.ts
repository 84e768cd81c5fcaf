// Child process of test/runtime-device.test.ts: runs a small ViT-like train-step graph (forward,
// loss and gradients) on WebGPU and on the CPU and writes both results to a JSON file.
//
// It is a separate process because the Vulkan/Dawn environment (VK_ICD_FILENAMES,
// LD_LIBRARY_PATH, XDG_RUNTIME_DIR from .cache/mesa/env.sh) must be set before onnxruntime is
// loaded. The WebGPU session is created with verbose logging, so the parent can read from this
// process's stderr where onnxruntime placed each node.
//
// Usage: node --import tsx test/webgpu-check.ts OUT.json

import * as fs from 'node:fs';
import { grad } from '../src/engine/graph/grad';
import { Graph } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { Session } from '../src/engine/runtime/session';
import type { HostTensor } from '../src/engine/tensor';
import { rng } from './helpers';

export const SIZES = { B: 4, T: 17, D: 64, H: 2, F: 256, C: 10 };

/** One pre-norm transformer block + CLS head + cross-entropy; gradients w.r.t. fc1 and head. */
export function buildVitLike(): { model: ReturnType<typeof compile>; feeds: Record<string, HostTensor> } {
  const { B, T, D, H, F, C } = SIZES;
  const dh = D / H;
  const r = rng(1234);
  const randn = (n: number, scale: number): Float32Array =>
    Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
  const g = new Graph('float32');
  const cst = (shape: number[], scale: number, offset = 0) =>
    g.tensor(
      shape,
      randn(
        shape.reduce((a, b) => a * b, 1),
        scale,
      ).map((v) => v + offset),
    );

  const x = g.input('x', [B, T, D]);
  const labels = g.input('labels', [B], 'int64');
  const w1 = g.input('w1', [D, F]); // trainable
  const headW = g.input('head_w', [D, C]); // trainable

  // Attention (frozen weights as initializers, like the engine's backbone).
  const h = g.layerNorm(x, cst([D], 0.1, 1), cst([D], 0.1), 1e-6);
  const heads = (t: ReturnType<typeof g.input>) => g.transpose(g.reshape(t, [B, T, H, dh]), [0, 2, 1, 3]);
  const q = heads(g.matmul(h, cst([D, D], 0.2)));
  const k = heads(g.matmul(h, cst([D, D], 0.2)));
  const v = heads(g.matmul(h, cst([D, D], 0.2)));
  const att = g.softmax(g.mulScalar(g.matmul(q, g.mT(k)), 1 / Math.sqrt(dh)), -1);
  const o = g.reshape(g.transpose(g.matmul(att, v), [0, 2, 1, 3]), [B, T, D]);
  const r1 = g.add(x, g.matmul(o, cst([D, D], 0.2)));
  // MLP with exact GELU.
  const h2 = g.layerNorm(r1, cst([D], 0.1, 1), cst([D], 0.1), 1e-6);
  const m = g.matmul(g.gelu(g.add(g.matmul(h2, w1), cst([F], 0.1)), 'none'), cst([F, D], 0.1));
  const r2 = g.add(r1, m);
  // CLS token -> norm -> head -> loss.
  const cls = g.reshape(g.slice(r2, 1, 0, 1), [B, D]);
  const logits = g.add(g.matmul(g.layerNorm(cls, cst([D], 0.1, 1), cst([D], 0.1), 1e-6), headW), cst([C], 0.1));
  const loss = g.crossEntropy(logits, labels);
  const [dW1, dHead] = grad(loss, [w1, headW]);
  const model = compile(g, { loss, logits, d_w1: dW1, d_head_w: dHead }, { name: 'vit_like_step' });

  const feeds: Record<string, HostTensor> = {
    x: { dtype: 'float32', shape: [B, T, D], data: randn(B * T * D, 1) },
    labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from({ length: B }, (_, i) => BigInt((i * 3) % C)) },
    w1: { dtype: 'float32', shape: [D, F], data: randn(D * F, 0.15) },
    head_w: { dtype: 'float32', shape: [D, C], data: randn(D * C, 0.3) },
  };
  return { model, feeds };
}

export interface CheckResult {
  nodeCount: number;
  cpu: Record<string, number[]>;
  webgpu: Record<string, number[]>;
  /** Session creation, first run (includes shader compilation) and a second, warm run. */
  webgpuCreateMs: number;
  webgpuFirstRunMs: number;
  webgpuRunMs: number;
  cpuRunMs: number;
}

async function main(): Promise<void> {
  const outPath = process.argv[2];
  if (!outPath) throw new Error('usage: webgpu-check.ts OUT.json');
  const { model, feeds } = buildVitLike();
  const toPlain = (o: Record<string, HostTensor>) =>
    Object.fromEntries(Object.entries(o).map(([k, t]) => [k, Array.from(t.data as Float32Array)]));

  let t = Date.now();
  // Only WebGPU asked for: Session.create still adds the CPU provider for ops WebGPU lacks, as
  // the engine does; the verbose log (severity 0) records the placement on stderr.
  const gpu = await Session.create(model, { providers: ['webgpu'], logSeverity: 0 });
  const webgpuCreateMs = Date.now() - t;
  t = Date.now();
  const webgpu = toPlain(await gpu.run(feeds));
  const webgpuFirstRunMs = Date.now() - t;
  t = Date.now();
  await gpu.run(feeds);
  const webgpuRunMs = Date.now() - t;
  await gpu.release();

  const cpuSession = await Session.create(model, { providers: ['cpu'] });
  t = Date.now();
  const cpu = toPlain(await cpuSession.run(feeds));
  const cpuRunMs = Date.now() - t;
  await cpuSession.release();

  const res: CheckResult = {
    nodeCount: model.nodeCount,
    cpu,
    webgpu,
    webgpuCreateMs,
    webgpuFirstRunMs,
    webgpuRunMs,
    cpuRunMs,
  };
  fs.writeFileSync(outPath, JSON.stringify(res));
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`webgpu-check failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
