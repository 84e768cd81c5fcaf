// Messages between the training dashboard webview (webview-ui/dashboard/main.ts) and its host
// (src/extension/dashboard.ts). Both import this file, so the shapes cannot drift. Type-only:
// no DOM, no Node, no vscode. 'ready' and 'state' are the core messages of every panel
// (../common/protocol.ts).
//
//   webview -> host  'ready'  once its script runs (messages posted before that are lost)
//                    'state'  after each render: what it keeps in setState plus the rendered
//                             values of the stable elements (for restore checks and tests)
//   host -> webview  'init'   the run: metadata, metrics.jsonl history, summary.json
//                    'event'  one live engine event
//                    'status' the run's status changed
//                    'summary' summary.json appeared or changed

import type { TrainEvent } from '../../src/engine/train/trainer';
import type { CoreWebviewMessage, StateMessage } from '../common/protocol';

export type RunStatus = 'starting' | 'running' | 'stopped' | 'done' | 'failed';

export type StepEvent = Extract<TrainEvent, { type: 'step' }>;
export type EpochEvent = Extract<TrainEvent, { type: 'epoch' }>;

export interface RunMeta {
  dir: string;
  name: string;
  status: RunStatus;
  reason?: string;
  /** Layer (1-based) of each exit; empty until the run's config.json exists. */
  exits: number[];
  epochs: number;
  classes: number;
  /** 'regression': the charts and table show MAE (target units) instead of accuracy. */
  task?: 'regression';
  /** Branch type of each exit (config.met.branch; 'linear' for runs made before branches). */
  branches: string[];
  variant: string;
  backbone: string;
}

/**
 * metrics.jsonl as columns (typed arrays: a long run has tens of thousands of steps).
 * Per-exit columns are row-major: value of exit j at row i is at i * K + j.
 */
export interface History {
  K: number;
  step: Float64Array;
  epoch: Float32Array;
  loss: Float32Array;
  lossPerExit: Float32Array;
  /** Training batch accuracy per exit; for regression runs the batch MAE (step maePerExit). */
  accPerExit: Float32Array;
  epochs: EpochEvent[];
  /** The last step event (epoch, throughput, ETA at the time). */
  last: StepEvent | null;
}

export interface SummaryLite {
  exits: {
    exit: number;
    layer: number;
    accuracy: number;
    gflops: number;
    branch?: string;
    mae?: number;
    rmse?: number;
  }[];
  trainImgPerSec: number;
}

export type HostMessage =
  | { type: 'init'; run: RunMeta; history: History; summary: SummaryLite | null }
  | { type: 'event'; event: TrainEvent }
  | { type: 'status'; status: RunStatus; reason?: string }
  | { type: 'summary'; summary: SummaryLite };

/** What the webview keeps with setState (small: the history is re-read from the run folder). */
export interface DashboardState {
  runDir: string;
  status?: RunStatus;
  /** Test accuracy per exit from summary.json (null where it is not a number, or before it exists). */
  summaryAccuracy?: (number | null)[];
}

/** The rendered text of the stable elements, as a user sees them. */
export interface RenderedSnapshot {
  epoch: string;
  step: string;
  throughput: string;
  eta: string;
  status: string;
  /** Points drawn per series in each chart. */
  lossPoints: number[];
  accPoints: number[];
  /** Regression runs: val is the val MAE, test the test MAE, rmse the test RMSE. */
  exits: { exit: number; layer: string; branch: string; val: string; test: string; rmse?: string; gflops: string }[];
}

export type DashboardStateMessage = StateMessage<DashboardState, RenderedSnapshot>;

export type WebviewMessage = CoreWebviewMessage<DashboardState, RenderedSnapshot>;
