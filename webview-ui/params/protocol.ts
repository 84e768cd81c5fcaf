// Messages between the parameter-counts webview (webview-ui/params/main.ts) and its host
// (src/extension/paramsPanel.ts). Type-only. The numbers are those of 'params/compute', i.e.
// `met params --json`; the series travel as typed arrays.
//
//   webview -> host  'ready' | 'state' (after each render: setState contents + rendered texts;
//                    the core messages of ../common/protocol.ts)
//                    'refresh' (the button: recompute now)
//   host -> webview  'computing' | 'report' | 'error'

import type { CoreWebviewMessage, StateMessage } from '../common/protocol';

export interface ParamsSource {
  kind: 'config' | 'run';
  /** The config file, or the run folder. */
  path: string;
  /** What the title shows (file name, or run name). */
  name: string;
}

export interface ParamsNumbers {
  model: {
    name: string;
    imageSize: number;
    channels: number;
    patchSize: number;
    dim: number;
    depth: number;
    heads: number;
    mlpDim: number;
  };
  config: { exits: number[]; rank: number; classes: number; variant: string; eaPositions: string; featurePath: string };
  backbone: number;
  trainable: number;
  total: number;
  trainablePercent: number;
  metAdapters: number;
  independentAdapters: number;
  reduction: number | null;
  reductionLimit: number | null;
  sumK: number;
  adapters: number;
  storedTrainable: number;
  /** The five groups of the bars: frozen backbone, shared projections, cores, diagonals, heads. */
  groups: { names: string[]; params: Float64Array; trainable: Uint8Array };
  /** The detailed rows of `met params` (W_d, W_u, A_i, B_i, λ, heads...). */
  components: {
    names: string[];
    shapes: string[];
    count: Float64Array;
    each: Float64Array;
    params: Float64Array;
    trainable: Uint8Array;
  };
  /** Per exit: layer, cumulative GFLOPs per image, GFLOPs of its segment; its branch type,
   *  the branch's parameters and GFLOPs (part of the segment). */
  exits: {
    layer: Int32Array;
    gflops: Float64Array;
    segment: Float64Array;
    branch: string[];
    branchParams: Float64Array;
    branchGflops: Float64Array;
  };
}

export type ParamsHostMessage =
  | { type: 'computing'; source: ParamsSource }
  | { type: 'report'; seq: number; source: ParamsSource; numbers: ParamsNumbers; ms: number; at: string }
  | { type: 'error'; source: ParamsSource; message: string };

export interface ParamsState {
  source: ParamsSource;
}

/** The panel's texts as shown (tests compare them with `met params --json`). */
export interface ParamsRendered {
  /** The host's number of the computation shown. */
  seq: number;
  cards: Record<string, string>;
  groups: { name: string; params: string; share: string }[];
  components: { name: string; shape: string; count: string; params: string; trainable: string }[];
  exits: { exit: string; layer: string; branch: string; branchParams: string; gflops: string; segment: string }[];
  /** The raw numbers the webview received (exact, for comparisons). */
  raw: {
    trainable: number;
    backbone: number;
    total: number;
    trainablePercent: number;
    groups: number[];
    gflops: number[];
    independentAdapters: number;
    metAdapters: number;
  };
}

export type ParamsStateMessage = StateMessage<ParamsState, ParamsRendered | null, { error: string | null }>;

export type ParamsWebviewMessage =
  CoreWebviewMessage<ParamsState, ParamsRendered | null, { error: string | null }> | { type: 'refresh' };
