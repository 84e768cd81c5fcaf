// Messages between the similarity-matrices webview (webview-ui/similarity/main.ts) and its host
// (src/extension/similarity.ts). Both import this file, so the shapes cannot drift. Type-only.
//
//   webview -> host  'ready'    once its script runs (messages posted before that are lost)
//                    'compute'  the user changed the exits, the sample size or the split
//                    'state'    after each render: its setState contents and what it drew
//   host -> webview  'init'     the run (exits, classes, split sizes) and the settings to show
//                    'computing' a computation for these settings started
//                    'result'   the engine's matrices ('similarity/compute') + thumbnail URIs
//                    'error'    the computation failed (message names the run / field)
//                    'focusCell' (tests) move the cursor to a cell, as the arrow keys do
// 'ready' and 'state' are the core messages of every panel (../common/protocol.ts).

import type { CoreWebviewMessage, StateMessage } from '../common/protocol';

export type Split = 'train' | 'val' | 'test';

export interface SimSettings {
  /** 0-based exits: one, or two shown side by side. */
  exits: number[];
  perClass: number;
  split: Split;
}

export interface SimRunMeta {
  dir: string;
  name: string;
  /** 1-based layer of each exit. */
  layers: number[];
  classes: string[];
  counts: { train: number; val: number; test: number };
  /** How training turned cosine similarities into weights (none: they can be negative). */
  simClamp: string;
  variant: string;
}

export interface SimExitData {
  exit: number;
  layer: number;
  gr: number;
  /** n x n, row-major, in the sample's (class-sorted) order. */
  sw: Float32Array;
  sb: Float32Array;
  dist: Float32Array;
}

export interface SimResultMessage {
  type: 'result';
  /** Increases with each computation; the webview ignores older ones. */
  seq: number;
  settings: SimSettings;
  files: string[];
  /** Webview URIs of the thumbnails (or of the images themselves), null where unreadable. */
  thumbs: (string | null)[];
  labels: Int32Array;
  classes: string[];
  /** First index of each class in the sample, then n. */
  classStarts: Int32Array;
  exits: SimExitData[];
  /** Engine time of the computation (ms). */
  ms: number;
}

export type SimHostMessage =
  | { type: 'init'; run: SimRunMeta; settings: SimSettings }
  | { type: 'computing'; seq: number; settings: SimSettings }
  | SimResultMessage
  | { type: 'error'; seq: number; message: string }
  | { type: 'focusCell'; i: number; j: number };

/** What the webview keeps with setState (small: the matrices are recomputed by the engine). */
export interface SimState {
  runDir: string;
  settings?: SimSettings;
  /** The cell under the keyboard cursor. */
  cursor?: [number, number];
}

export type MatrixKind = 'sw' | 'sb' | 'dist';

/** Per drawn heatmap: numbers read back from the typed array the webview holds and drew. */
export interface RenderedMatrix {
  exit: number;
  kind: MatrixKind;
  n: number;
  sum: number;
  /** Σ v · ((31 i + 17 j) mod 13 + 1): catches rows or columns in another order. */
  weightedSum: number;
  min: number;
  max: number;
  /** The colour scale: diverging around 0 (negative values present) or sequential. */
  scale: 'diverging' | 'sequential';
  domain: [number, number];
  /** [i, j, value] at a few fixed cells and the cursor. */
  cells: [number, number, number][];
  /** Canvas pixel at the cursor cell's centre and the scale's colour for its value (rgb). */
  pixel: number[];
  expectedPixel: number[];
}

export interface SimRendered {
  seq: number;
  settings: SimSettings;
  n: number;
  files: string[];
  labels: number[];
  classStarts: number[];
  matrices: RenderedMatrix[];
  gr: number[];
  /** The readout (hover / keyboard cursor) as shown. */
  readout: {
    i: number;
    j: number;
    rowLabel: string;
    colLabel: string;
    rowImage: string | null;
    colImage: string | null;
    values: { exit: number; kind: MatrixKind; text: string }[];
  } | null;
  /** Class band labels drawn along the axes (first heatmap). */
  bandLabels: string[];
}

export type SimStateMessage = StateMessage<SimState, SimRendered | null, { error: string | null }>;

export type SimWebviewMessage =
  | CoreWebviewMessage<SimState, SimRendered | null, { error: string | null }>
  | { type: 'compute'; settings: SimSettings };
