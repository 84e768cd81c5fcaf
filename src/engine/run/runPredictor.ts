// A trained run loaded for inference on image files: what `met predict --run` and the
// extension's Inspect exits panel (src/engine/explore/score.ts) share, so that the panel's
// numbers are the CLI's numbers. Baked segments (as `met eval` and `met export` build them),
// the run's preprocessing, and the run's chosen operating point.
//
// Batching is part of the contract: images go through the network in slices of `batch` of the
// caller's list (files that fail to decode leave their slice), exactly as `met predict` does,
// so two callers that pass the same list and batch size get bit-identical confidences.

import * as path from 'node:path';
import { loadBatch, type Preprocess } from '../data/image';
import type { MetConfig } from '../model/met';
import type { VitConfig } from '../model/config';
import { loadRun, preprocessOf } from './run';
import { type ChosenOperatingPoint, chosenOperatingPoint, readThresholds, type RunConfigFile } from './runFolder';
import { cpuOnly, type SessionOptions } from '../runtime/session';
import { type HostTensor, UserError } from '../tensor';
import { buildSegments, confidences, cumulativeGflops, SegmentRunner } from '../infer/segments';

/** `met predict`'s default: images per forward pass. */
export const DEFAULT_PREDICT_BATCH = 32;

/** The run's chosen operating point, with errors naming the run folder. */
export function runOperatingPoint(runDir: string, K: number): ChosenOperatingPoint {
  try {
    return chosenOperatingPoint(readThresholds(runDir), K);
  } catch (e) {
    throw new UserError(`${runDir}: ${(e as Error).message}`);
  }
}

export interface ScoredBatch {
  /** Files decoded and scored, in input order. */
  ok: string[];
  /** Files that could not be decoded, with the reason. */
  failed: { file: string; reason: string }[];
  /** Per exit: probabilities [ok.length * C] (row-major), and their max and argmax. */
  probs: Float32Array[];
  conf: Float32Array[];
  pred: Int32Array[];
  /**
   * With `dynamic`: budgeted inference run for real (rows leave the batch at the exit whose
   * threshold they reach): the exit each row took (0-based) and its answer.
   */
  dynamic?: { exitOf: Int32Array; conf: Float32Array; pred: Int32Array };
}

export class RunPredictor {
  private constructor(
    readonly runDir: string,
    readonly cf: RunConfigFile,
    readonly vit: VitConfig,
    /** Backbone tensors (prepared) and MET's trained tensors, for callers that build other graphs. */
    readonly backbone: Map<string, HostTensor>,
    readonly params: Map<string, HostTensor>,
    readonly pre: Preprocess,
    /** Cumulative GFLOPs to reach each exit. */
    readonly gflops: number[],
    private readonly runner: SegmentRunner,
    /** The run's chosen thresholds (thresholds.json); reloadThresholds() re-reads them. */
    public op: ChosenOperatingPoint,
  ) {}

  static async open(runDir: string, so: SessionOptions = {}): Promise<RunPredictor> {
    const dir = path.resolve(runDir);
    const { cf, params, backbone, vit } = loadRun(dir);
    const op = runOperatingPoint(dir, cf.met.exits.length);
    const segs = buildSegments(vit, cf.met, backbone, params, true, cpuOnly(so));
    const runner = await SegmentRunner.create(segs, cf.met.numClasses, null, so);
    return new RunPredictor(
      dir,
      cf,
      vit,
      backbone,
      params,
      preprocessOf(cf.train, vit),
      cumulativeGflops(segs),
      runner,
      op,
    );
  }

  get met(): MetConfig {
    return this.cf.met;
  }

  /** Exits of the network. */
  get K(): number {
    return this.cf.met.exits.length;
  }

  /** Classes. */
  get C(): number {
    return this.cf.met.numClasses;
  }

  reloadThresholds(): void {
    this.op = runOperatingPoint(this.runDir, this.K);
  }

  /** 0-based exit a sample with per-exit confidences `conf(j)` takes under the chosen thresholds. */
  exitTaken(conf: (j: number) => number): number {
    const T = this.op.perExit;
    let j = 0;
    // The first exit whose confidence reaches its threshold; the last exit accepts everyone
    // (its threshold is -Infinity; unused exits have +Infinity). NaN passes nothing.
    while (j < this.K - 1 && !(conf(j) >= T[j])) j++;
    return j;
  }

  /** Decodes `files` (one slice of the caller's list) and runs every exit on them. */
  async scoreBatch(files: string[], opts: { dynamic?: boolean } = {}): Promise<ScoredBatch> {
    const vit = this.vit;
    const batch = await loadBatch(files, this.pre);
    const n = batch.ok.length;
    const out: ScoredBatch = { ok: batch.ok, failed: batch.failed, probs: [], conf: [], pred: [] };
    if (!n) return out;
    const per = vit.channels * vit.imageSize * vit.imageSize;
    const x: HostTensor = {
      dtype: 'float32',
      shape: [n, vit.channels, vit.imageSize, vit.imageSize],
      data: batch.data.subarray(0, n * per),
    };
    out.probs = (await this.runner.allExits(x)).probs;
    for (const p of out.probs) {
      const c = confidences(p, this.C);
      out.conf.push(c.conf);
      out.pred.push(c.pred);
    }
    if (opts.dynamic) {
      const dyn = await this.runner.dynamic(x, this.op.perExit);
      const taken = confidences(dyn.probs, this.C);
      out.dynamic = { exitOf: dyn.exitOf, conf: taken.conf, pred: taken.pred };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.runner.release();
  }
}
