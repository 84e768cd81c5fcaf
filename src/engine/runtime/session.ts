// onnxruntime-node sessions built from in-memory models.

import * as ort from 'onnxruntime-node';
import type { CompiledModel } from '../graph/onnx';
import type { GDType } from '../graph/ir';
import type { ProviderName } from '../settings';
import { type HostTensor, numel, shapeStr } from '../tensor';

export interface SessionOptions {
  /** Execution providers in order of preference; 'cpu' is always the fallback. */
  providers?: ProviderName[];
  /** Intra-op threads (0 = onnxruntime's default, one per physical core). */
  threads?: number;
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Writes the optimized model here (debugging which fusions onnxruntime applied). */
  optimizedModelPath?: string;
  logSeverity?: 0 | 1 | 2 | 3 | 4;
  /** Turns on onnxruntime's profiler; the trace is written as `<prefix>_<date>.json` in the cwd. */
  profilePrefix?: string;
  /**
   * Outputs that stay in the GPU provider's memory ('gpu-buffer'), to be fed to a later run
   * (runMixed) without a round trip through the host. The others come back to the host.
   */
  deviceOutputs?: string[];
}

/** A tensor left in a GPU provider's memory by a run (SessionOptions.deviceOutputs). */
export interface DeviceTensor {
  readonly device: ort.Tensor;
}

/** Sessions with these options run on onnxruntime's CPU provider alone (see CompileOptions.cpuContribOps). */
export function cpuOnly(opts: SessionOptions = {}): boolean {
  return (opts.providers ?? ['cpu']).every((p) => p === 'cpu');
}

export class Session {
  private constructor(
    readonly ort: ort.InferenceSession,
    readonly model: CompiledModel,
    readonly providers: string[],
  ) {}

  static async create(model: CompiledModel, opts: SessionOptions = {}): Promise<Session> {
    const providers = opts.providers ?? ['cpu'];
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: providers.includes('cpu') ? providers : [...providers, 'cpu'],
      graphOptimizationLevel: opts.optimization ?? 'all',
      intraOpNumThreads: opts.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      enableCpuMemArena: true,
      // DirectML cannot run with memory patterns (onnxruntime's DML provider documentation).
      enableMemPattern: !providers.includes('dml'),
      // MET_ORT_VERBOSE=1: onnxruntime's verbose log on stderr, which says on which provider each
      // node was placed (the WebGPU parity test reads it).
      logSeverityLevel: opts.logSeverity ?? (process.env.MET_ORT_VERBOSE === '1' ? 0 : 3),
      ...(process.env.MET_ORT_VERBOSE === '1' ? { logVerbosityLevel: 0 } : {}),
    };
    if (opts.deviceOutputs?.length) {
      const dev = new Set(opts.deviceOutputs);
      so.preferredOutputLocation = Object.fromEntries(
        model.outputs.map((o) => [o.name, dev.has(o.name) ? 'gpu-buffer' : 'cpu'] as const),
      );
    }
    if (opts.optimizedModelPath) so.optimizedModelFilePath = opts.optimizedModelPath;
    if (opts.profilePrefix) {
      so.enableProfiling = true;
      so.profileFilePrefix = opts.profilePrefix;
    }
    const s = await ort.InferenceSession.create(model.bytes, so);
    return new Session(s, model, providers);
  }

  /** Runs the model; feeds are host tensors keyed by input name, outputs come back the same way. */
  async run(feeds: Record<string, HostTensor>, fetch?: string[]): Promise<Record<string, HostTensor>> {
    const f: Record<string, ort.Tensor> = {};
    for (const inp of this.model.inputs) {
      const t = feeds[inp.name];
      if (!t) throw new Error(`missing input '${inp.name}' ${shapeStr(inp.shape)}`);
      if (t.dtype !== inp.dtype) throw new Error(`input '${inp.name}': expected ${inp.dtype}, got ${t.dtype}`);
      const ok =
        t.shape.length === inp.shape.length && inp.shape.every((d, i) => typeof d !== 'number' || d === t.shape[i]);
      if (!ok) throw new Error(`input '${inp.name}': expected shape ${shapeStr(inp.shape)}, got ${shapeStr(t.shape)}`);
      f[inp.name] = toOrt(t);
    }
    const res = fetch ? await this.ort.run(f, fetch) : await this.ort.run(f);
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(res)) out[k] = fromOrt(v);
    return out;
  }

  /**
   * run() with feeds that may be DeviceTensors (a previous run's device outputs, of this or
   * another session on the same provider); device outputs come back as DeviceTensors, the
   * others as host tensors.
   */
  async runMixed(
    feeds: Record<string, HostTensor | DeviceTensor>,
  ): Promise<{ host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }> {
    const f: Record<string, ort.Tensor> = {};
    for (const inp of this.model.inputs) {
      const t = feeds[inp.name];
      if (!t) throw new Error(`missing input '${inp.name}' ${shapeStr(inp.shape)}`);
      f[inp.name] = 'device' in t ? t.device : toOrt(t);
    }
    const res = await this.ort.run(f);
    const host: Record<string, HostTensor> = {};
    const device: Record<string, DeviceTensor> = {};
    for (const [k, v] of Object.entries(res)) {
      if (v.location === 'gpu-buffer') device[k] = { device: v };
      else host[k] = fromOrt(v);
    }
    return { host, device };
  }

  /** Ends profiling (see SessionOptions.profilePrefix). */
  endProfiling(): void {
    this.ort.endProfiling();
  }

  async release(): Promise<void> {
    await this.ort.release();
  }
}

const ORT_TYPE: Record<GDType, ort.Tensor.Type> = {
  float32: 'float32',
  float64: 'float64',
  int64: 'int64',
  bool: 'bool',
};

export function toOrt(t: HostTensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype as GDType];
  if (!type) throw new Error(`cannot feed dtype ${t.dtype}`);
  if (t.data.length !== numel(t.shape))
    throw new Error(`tensor data (${t.data.length}) does not match shape ${shapeStr(t.shape)}`);
  return new ort.Tensor(type, t.data as never, t.shape);
}

export function fromOrt(v: ort.Tensor): HostTensor {
  const dims = v.dims.slice();
  switch (v.type) {
    case 'float32':
      return { dtype: 'float32', shape: dims, data: v.data as Float32Array };
    case 'float64':
      return { dtype: 'float64', shape: dims, data: v.data as Float64Array };
    case 'int64':
      return { dtype: 'int64', shape: dims, data: v.data as BigInt64Array };
    case 'bool':
      return { dtype: 'bool', shape: dims, data: v.data as Uint8Array };
    default:
      throw new Error(`unsupported output type ${v.type}`);
  }
}
