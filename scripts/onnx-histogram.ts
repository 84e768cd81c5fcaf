// `node --import tsx scripts/onnx-histogram.ts [--hash]`: compiles the benchmark's graphs (bench/bench.ts:
// ViT-B/16 at 224, the forward, the adapter-sized train step, the MET train step at batch 8 and
// 32, the inference segments) to ONNX without running them, and prints each model's ONNX node
// count and op-type histogram. A structural check that a refactoring of the IR or the model code
// leaves the executed graphs as they were (or smaller): run it before and after and compare.
// Weights are zeros (only shapes matter); --hash adds a sha256 of each model's bytes.

import { createHash } from 'node:crypto';
import { grad } from '../src/engine/graph/grad';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile, type CompiledModel } from '../src/engine/graph/onnx';
import { canonicalShapes, type VitConfig } from '../src/engine/model/config';
import { initMetParams, MET_DEFAULTS, type MetConfig } from '../src/engine/model/met';
import { VitParams, vitForward } from '../src/engine/model/vit';
import { buildSegments } from '../src/engine/infer/segments';
import { buildTrainStep } from '../src/engine/train/trainer';
import { type HostTensor, numel } from '../src/engine/tensor';
import { presetConfig } from '../src/engine/export/costs';
import { BACKBONE_PRESETS } from '../src/engine/infer/params';

/** ViT-B/16 at 224 with an ImageNet-sized head: the standard preset (as `met params --backbone vit-b16`). */
const VIT_B16: VitConfig = { ...presetConfig(BACKBONE_PRESETS['vit-b16']), numClasses: 1000 };
const CPU = { cpuContribOps: true };

/** Op types of a ModelProto's graph (field 7 -> GraphProto field 1 -> NodeProto field 4 / 7). */
function opTypes(bytes: Uint8Array): string[] {
  const readVarint = (b: Uint8Array, p: { i: number }): number => {
    let v = 0;
    let s = 1;
    for (;;) {
      const x = b[p.i++];
      v += (x & 0x7f) * s;
      if (x < 0x80) return v;
      s *= 128;
    }
  };
  const fields = (b: Uint8Array, want: number): Uint8Array[] => {
    const out: Uint8Array[] = [];
    const p = { i: 0 };
    while (p.i < b.length) {
      const tag = readVarint(b, p);
      const wire = tag & 7;
      const f = Math.floor(tag / 8);
      if (wire === 0) readVarint(b, p);
      else if (wire === 5) p.i += 4;
      else if (wire === 1) p.i += 8;
      else if (wire === 2) {
        const n = readVarint(b, p);
        if (f === want) out.push(b.subarray(p.i, p.i + n));
        p.i += n;
      } else throw new Error(`wire type ${wire}`);
    }
    return out;
  };
  const dec = new TextDecoder();
  const graph = fields(bytes, 7)[0];
  return fields(graph, 1).map((n) => {
    const dom = fields(n, 7).map((d) => dec.decode(d))[0];
    const op = dec.decode(fields(n, 4)[0]);
    return dom ? `${dom}.${op}` : op;
  });
}

function report(name: string, m: CompiledModel): void {
  const ops = opTypes(m.bytes);
  const h = new Map<string, number>();
  for (const o of ops) h.set(o, (h.get(o) ?? 0) + 1);
  const hist = [...h]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([o, n]) => `${o} ${n}`)
    .join(', ');
  const hash = process.argv.includes('--hash')
    ? ` sha256 ${createHash('sha256').update(m.bytes).digest('hex').slice(0, 16)}`
    : '';
  console.log(`${name}: ${ops.length} nodes${hash}\n  ${hist}`);
}

function zeros(cfg: VitConfig): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(cfg))
    m.set(name, { dtype: 'float32', shape, data: new Float32Array(numel(shape)) });
  return m;
}

function main(): void {
  const cfg = VIT_B16;
  const w = zeros(cfg);
  {
    const g = new Graph();
    const P = new VitParams(g, w);
    const { logits } = vitForward(P, cfg, g.input('images', ['B', 3, 224, 224]));
    report('forward', compile(g, { logits: logits! }, CPU));
  }
  {
    const names = ['pos_embed', 'cls_token', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias'];
    for (let i = 0; i < cfg.depth; i++)
      for (const n of ['norm1', 'norm2']) names.push(`blocks.${i}.${n}.weight`, `blocks.${i}.${n}.bias`);
    const g = new Graph();
    const P = new VitParams(g, w, new Set(names));
    const { logits } = vitForward(P, cfg, g.input('images', ['B', 3, 224, 224]));
    const loss = g.crossEntropy(logits!, g.input('labels', ['B'], 'int64'));
    const gr = grad(
      loss,
      names.map((n) => P.get(n)),
    );
    const outs: Record<string, Tensor> = { loss };
    names.forEach((n, i) => (outs[`grad.${n}`] = gr[i]));
    report('trainstep', compile(g, outs, CPU));
  }
  const met: MetConfig = { ...MET_DEFAULTS, exits: [6, 7, 8, 9, 10, 11, 12], rank: 8, lambda: 0.01, numClasses: 100 };
  const init = initMetParams(cfg, met, 0);
  for (const batch of [8, 32])
    report(`met-trainstep b${batch}`, buildTrainStep(cfg, w, met, init, { cpuOnly: true, batch }).model);
  const segs = buildSegments(cfg, met, w, init, true, true);
  segs.forEach((s, j) => report(`segment ${j}`, s.model));
  // The sl-vit exit branch on the last three exits (not in the bench; it shares the backbone's blocks).
  const sl: MetConfig = { ...met, exits: [10, 11, 12], branch: 'sl-vit' };
  report(
    'met-trainstep sl-vit b8',
    buildTrainStep(cfg, w, sl, initMetParams(cfg, sl, 0), { cpuOnly: true, batch: 8 }).model,
  );
}

main();
