// Messages between the Inspect exits webview (webview-ui/inspect/main.ts) and its host
// (src/extension/inspect.ts). Both import this file, so the shapes cannot drift. Type-only: no
// DOM, no Node, no vscode.
//
// Numbers travel as typed arrays. VS Code serialises webview messages as JSON except for typed
// arrays, which it transfers as binary: in plain numbers NaN and ±Infinity would arrive as null,
// so thresholds (±Infinity) and confidences of unscored images (NaN) only ever travel in typed
// arrays.
//
// Array layout: image-major everywhere, as the engine's inspect/score result (ScoreResult in
// src/engine/explore/types.ts). With n images, K exits and k classes kept per exit:
//   conf, pred, value     [n * K]      image i at exit j: i * K + j
//   topProb, topClass     [n * K * k]  rank t of image i at exit j: (i * K + j) * k + t
// ('init' for the stored test split: n = all images; 'scores': n = the m images of `index`;
// 'detail': one image, [K] and [K * k].) predictions.json keeps one array per exit instead
// ([K][n]); the host transposes it once when it reads the run (src/extension/panels/inspectRun.ts).
//
//   webview -> host  'ready'    its script runs (messages posted before that are lost)
//                    'visible'  the rows on screen changed: fetch their thumbnails and scores first
//                    'detail'   an image was selected: score it with top-3 classes, a large thumbnail
//                    'attention' Explain is open on an image: its exits' attention maps (asked once per image)
//                    'embeddings' Embeddings opened, or the selection changed: the run's embeddings per exit,
//                               with the selected image (index) placed on them when it is not in the sample
//                    'save'     save the slider's thresholds to the run (thresholds.json `chosen`)
//                    'pickRun'  show another run; 'pickSource' choose images (test split, folder, files)
//                    'state'    after each render: what it keeps in setState plus rendered values
//                               ('ready' and 'state' are the core messages of ../common/protocol.ts)
//                    'painted'  the first frame with rows on screen (time to first paint)
//   host -> webview  'init'     the run, the images, the curve, and stored scores (test split)
//                    'scores'   per-exit scores of some images (engine 'inspect/score')
//                    'thumbs'   thumbnail URIs of some images (engine 'inspect/thumbs')
//                    'detail'   top-k per exit of the selected image
//                    'attention' the attention maps of an image (engine 'inspect/attention'), or why not
//                    'embeddings' the run's embeddings per exit (engine 'embeddings/compute'), or why not
//                    'chosen'   the run's saved thresholds changed (after 'save', or on disk)
//                    'status'   a line for the status bar of the panel (progress, errors)
//                    'test'     test-only actions (met.inspect.test): drive the UI as a user would;
//                               only the test build of the script acts on them (test-hooks.ts)
//
// Regression runs (task 'regression', model/regression.ts) use the same messages: `value` carries
// each exit's predicted number, `conf` the agreement with the previous exit (NaN at exit 1: it
// never takes an image), `pred` is -1 and there is no top-k; `targets` replaces `labels`.

import type { CoreWebviewMessage, StateMessage, TestMessage } from '../common/protocol';
import type { AttentionResult, EmbeddingsResult } from '../../src/engine/explore/types';
import type { EmbeddingsSnapshot } from '../common/embeddingsSnapshot';

export interface RunChoice {
  dir: string;
  name: string;
  /** Test accuracy of the last exit, for the run picker. */
  detail: string;
}

export interface SourceInfo {
  /** 'test': the run's own test split (stored predictions.json, no inference). 'paths': images or folders scored on demand. */
  kind: 'test' | 'paths';
  /** Absolute files or folders (kind 'paths'). */
  paths: string[];
  /** What the header says ("test split", "shapes/ (5,000 images)"). */
  label: string;
}

/** The budget curve of thresholds.json, deduplicated (points with equal thresholds kept once, smallest p). */
export interface Curve {
  /** [P] p of each point (NaN: the saved thresholds are no point of the curve). */
  p: Float64Array;
  /** [P * M] thresholds per point over the M used exits (±Infinity kept: typed array). */
  thresholds: Float64Array;
  /** [P] test accuracy and mean test GFLOPs thresholds.json records for each point. */
  accuracy: Float64Array;
  gflops: Float64Array;
}

export interface InitMessage {
  type: 'init';
  runDir: string;
  runName: string;
  runs: RunChoice[];
  source: SourceInfo;
  classes: string[];
  /** [K] 1-based layer of each exit; [K] cumulative GFLOPs per image to reach each exit. */
  layers: Int32Array;
  gflops: Float64Array;
  /** [M] 0-based exits used by budgeted inference (thresholds.json `exits`). */
  used: Int32Array;
  curve: Curve;
  /** The saved operating point: index into the curve (always present: appended when not on it). */
  chosen: number;
  chosenSource: string;
  /** Image files (absolute) in grid order, and what the grid shows for each (relative path). */
  files: string[];
  names: string[];
  /** [n] class index of each image, -1 when unknown (no class folder of the run's classes). */
  labels: Int32Array;
  /** Stored scores of the test split: [n * K] image-major confidence and class. Absent: scored on demand. */
  conf?: Float32Array;
  pred?: Int32Array;
  /** Skipped while listing (not images...), shown in the status line. */
  skipped: number;
  /** 'regression': the run predicts a number (values, MAE) instead of a class. */
  task?: 'regression';
  /** Regression: [n] target value of each image (NaN: unknown), and the stored values of the
   *  test split, [n * K] image-major (absent: scored on demand). */
  targets?: Float64Array;
  value?: Float32Array;
  /** Regression: the training targets' standard deviation (target units): the colour scale of
   *  agreement and error (model/regression.ts targetStd; 1 when not standardised). */
  targetScale?: number;
  /** Regression: where `targets` came from (the test split, or a folder's targets file). */
  targetsFrom?: string;
}

export interface ScoresMessage {
  type: 'scores';
  /** [m] image indices; the arrays below are image-major over them: [m * K] (top-k: [m * K * k]). */
  index: Int32Array;
  ok: Uint8Array;
  conf: Float32Array;
  pred: Int32Array;
  k: number;
  topProb: Float32Array;
  topClass: Int32Array;
  /** Regression: [m * K] values, image-major. */
  value?: Float32Array;
  /** Images scored so far, of all. */
  scored: number;
  total: number;
}

export type HostMessage =
  | InitMessage
  | ScoresMessage
  | { type: 'thumbs'; index: Int32Array; uris: (string | null)[] }
  | {
      type: 'detail';
      index: number;
      uri: string | null;
      k: number;
      conf: Float32Array;
      pred: Int32Array;
      topProb: Float32Array;
      topClass: Int32Array;
      value?: Float32Array;
      error?: string;
    }
  | { type: 'chosen'; curve: Curve; chosen: number; chosenSource: string; message?: string }
  | { type: 'status'; text: string; error?: boolean }
  | AttentionMessage
  | EmbeddingsMessage
  | TestMessage<TestAction>;

/** Explain: image `index`'s maps (the engine's result, typed arrays: grid row-major per exit), or an error. */
export type AttentionMessage = { type: 'attention'; index: number } & (
  Omit<AttentionResult, 'file'> | { error: string }
);

/** Embeddings per exit (views/embeddings.ts), asked with `index` (the selected image, placed on
 *  the sample's axes as `extra` when it is not in the sample), or why not. */
export type EmbeddingsMessage = { type: 'embeddings'; index?: number } & (
  { result: EmbeddingsResult } | { error: string }
);

/** Which map Explain draws: the exit token's attention at its own layer, or the rollout through layers 1..l_j. */
export type ExplainMode = 'last' | 'rollout';

/** Test-only: what met.inspect.test asks the webview to do (the same code paths as a user's input). */
export type TestAction =
  | { kind: 'slider'; index: number }
  | { kind: 'key'; key: string }
  | { kind: 'select'; row: number }
  | { kind: 'save' }
  /** Open or close Explain (its button) and pick a map (its radio buttons). */
  | { kind: 'explain'; open?: boolean; mode?: ExplainMode }
  /** Open or close Embeddings (its summary, clicked), then press `key` in the first exit's plot. */
  | { kind: 'embeddings'; open?: boolean; key?: string }
  /** Scroll the grid by `rowsPerFrame` rows every animation frame for `ms`, measuring frame gaps. */
  | { kind: 'scroll'; ms: number; rowsPerFrame: number };

/** What the webview keeps with setState (small: the data is re-read from the run folder). */
export interface InspectState {
  runDir: string;
  source: SourceInfo;
  scrollTop?: number;
  /** Active (keyboard) row and exit column, selected row (detail), slider position. */
  active?: number;
  col?: number;
  selected?: number;
  point?: number;
  /** Explain open, and the map it draws. */
  explain?: boolean;
  explainMode?: ExplainMode;
  /** Embeddings open. */
  embeddings?: boolean;
  /** Date.now() when the webview last stored it: the newer of two saved states wins. */
  savedAt?: number;
}

export interface Perf {
  /** ms from the script's start to the first frame with rows (performance.now()). */
  firstPaintMs?: number;
  /** The last scroll test: frames drawn, the longest gap between animation frames, the longest
   *  event-loop delay (a 10 ms interval timer's lateness), and how far it got. */
  scroll?: {
    ms: number;
    frames: number;
    worstFrameMs: number;
    worstLagMs: number;
    meanFrameMs: number;
    rowsMoved: number;
    finalTop: number;
    /** The longest of our own renders (rows on scroll, everything after new scores) during the scroll. */
    worstRenderMs: number;
    /** Long tasks (> 50 ms) of the webview's document during the scroll, as Chromium reports them. */
    longTasks: number;
    worstLongTaskMs: number;
  };
}

/** The rendered values, as a user sees them (for tests and restore checks). */
export interface RenderedSnapshot {
  n: number;
  /** Images whose scores have arrived. */
  scored: number;
  /**
   * Images the current point's thresholds were applied to (exit marks, summary, slider readouts).
   * Trails `scored` by up to one data frame (scores arriving are applied in batches every 100 ms).
   */
  applied: number;
  /** Row elements in the DOM (virtualised: a screenful, not n) and the rows they show. */
  domRows: number;
  firstRow: number;
  lastRow: number;
  thumbsShown: number;
  /** Exit cells marked as the exit taken, among the rows in the DOM. */
  markedCells: number;
  active: number;
  col: number;
  /** 'regression' when the run predicts values: MAE below instead of accuracy. */
  task?: 'regression';
  /** Static accuracy of each exit over the labelled scored images (null: none), and as shown.
   *  Regression: the MAE of each exit over the scored images with a target (target units). */
  exitAccuracy: (number | null)[];
  exitAccuracyText: string[];
  slider: {
    index: number;
    count: number;
    p: number | null;
    /** Thresholds over the used exits: numbers, or 'Infinity' / '-Infinity' (JSON has neither). */
    thresholds: (number | string)[];
    /** Accuracy under the thresholds; regression: the MAE (target units). */
    accuracy: number | null;
    gflops: number | null;
    exitCounts: number[];
    accuracyText: string;
    gflopsText: string;
    saved: boolean;
  };
  /** Per class (regression: per target value, or range of values): images, where they exit (per
   *  used exit), accuracy (regression: MAE) under the thresholds. */
  classes: { name: string; n: number; exitCounts: number[]; accuracy: number | null }[];
  /** The selected image: 1-based exit it takes under the slider's thresholds (0: not scored), per-exit bars.
   *  Regression: `value` per exit and the image's `target` (null: unknown); `cls` is the value as shown. */
  selected: {
    index: number;
    file: string;
    exit: number;
    target?: number | null;
    bars: { exit: number; conf: number; cls: string; value?: number; top: { cls: string; prob: number }[] }[];
  } | null;
  status: string;
  /** Explain as shown: for the selected image (`index`), the maps the engine sent, as numbers. */
  explain: {
    open: boolean;
    mode: ExplainMode;
    index: number | null;
    status: 'closed' | 'none' | 'loading' | 'ready' | 'error';
    error?: string;
    grid?: [number, number];
    exits: { exit: number; layer: number; last: number[]; rollout: number[] }[];
  };
  /** Embeddings as shown: the sample's settings, the note above the plots, what the view drew. */
  embeddings: {
    open: boolean;
    status: 'closed' | 'computing' | 'ready' | 'error';
    error?: string;
    split?: 'train' | 'val' | 'test';
    perClass?: number;
    seed?: number;
    note: string;
    view: EmbeddingsSnapshot | null;
  };
}

export type InspectStateMessage = StateMessage<InspectState, RenderedSnapshot, { perf: Perf }>;

export type WebviewMessage =
  | CoreWebviewMessage<InspectState, RenderedSnapshot, { perf: Perf }>
  | { type: 'visible'; first: number; last: number }
  | { type: 'detail'; index: number }
  | { type: 'attention'; index: number }
  | { type: 'embeddings'; index?: number }
  | { type: 'save'; point: number }
  | { type: 'pickRun'; dir: string }
  | { type: 'pickSource'; kind: 'test' | 'folder' | 'files' }
  | { type: 'painted'; ms: number };
