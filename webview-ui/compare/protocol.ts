// Messages between the Compare runs webview (webview-ui/compare/main.ts) and its host
// (src/extension/compare.ts). Type-only. The numbers are those of src/engine/study/compare.ts
// (readRunResult, comparisonTable, settingsDiff), read by the host from the run folders: the
// same functions `met ablate` prints its table with.
//
//   webview -> host  'ready' | 'state' (the core messages of ../common/protocol.ts)
//                    'refresh'                     read the run folders again
//                    'export' csv                  the host writes comparisonCsv (save dialog)
//                    'export' svg + the document   the host writes it (save dialog)
//                    'embeddings'                  compute the embeddings of every run (engine)
//   host -> webview  'loading' | 'data' | 'error'
//                    'exported'                    where an export went (or why not)
//                    'embeddings-computing' | 'embeddings' | 'embeddings-error'
//                    'test'                        test-only actions (met.compare.test)

import type { CoreWebviewMessage, StateMessage, TestMessage } from '../common/protocol';
import type { ComparisonTable, CurvePoint, EpochPoint, ExitResult } from '../../src/engine/study/compare';
import type { EmbeddingsResult } from '../../src/engine/explore/types';
import type { EmbeddingsSnapshot } from '../common/embeddingsSnapshot';

/** What the panel shows: run folders, or a study folder's runs. Kept with setState (restore). */
export interface CompareSource {
  /** The run folders, in the order they are drawn (colours follow it). */
  runs: string[];
  /** The study folder (study.json), when the panel was opened on one. */
  study?: string;
}

export interface CompareRun {
  name: string;
  runDir: string;
  variant: string;
  exits: ExitResult[];
  dynamic: CurvePoint[];
  mean: number;
  trainable: number;
  trainSeconds: number;
  epochs: EpochPoint[];
  steps: { step: number; loss: number }[];
}

export interface CompareData {
  seq: number;
  source: CompareSource;
  task: 'classification' | 'regression';
  /** A study's name and creation time (study.json), when opened on one. */
  study?: { name: string; dir: string; createdAt: string };
  runs: CompareRun[];
  /** comparisonTable, with each value as formatValue prints it. */
  table: ComparisonTable & { cells: string[][] };
  /** settingsDiff, values as text (JSON without the quotes of strings; '–' when unset). */
  diff: { key: string; values: string[] }[];
  /** Runs asked for that could not be read (not finished, gone), with why. */
  skipped: { dir: string; name: string; reason: string }[];
  /** Where the embeddings can be computed (trusted workspace, classification, an engine with 'embeddings/compute'). */
  embeddings: { available: boolean; why?: string };
  at: string;
  ms: number;
}

export interface EmbeddingSettings {
  perClass: number;
  split: 'val' | 'test' | 'train';
}

/** One run's embeddings ('embeddings/compute'), as the shared renderer (../common/embeddings.ts) takes them. */
export interface RunEmbeddings {
  runDir: string;
  name: string;
  result: EmbeddingsResult;
}

export type CompareTestAction =
  /** Export as if the button had been pressed, to `target` without a save dialog. */
  | { kind: 'export'; format: 'csv' | 'svg'; target: string }
  /** Move the curve chart's keyboard cursor to point `point` of run `run` (arrow keys do the same). */
  | { kind: 'focusPoint'; run: number; point: number }
  /** The per-exit validation curves on or off (the checkbox). */
  | { kind: 'perExit'; on: boolean }
  /** Compute the embeddings (the button). */
  | { kind: 'embeddings' };

export type CompareHostMessage =
  | { type: 'loading'; source: CompareSource }
  | { type: 'data'; data: CompareData }
  | { type: 'error'; source: CompareSource; message: string }
  | { type: 'exported'; format: 'csv' | 'svg'; file: string | null; error?: string }
  | { type: 'embeddings-computing'; settings: EmbeddingSettings }
  | { type: 'embeddings'; settings: EmbeddingSettings; seed: number; runs: RunEmbeddings[]; ms: number }
  | { type: 'embeddings-error'; message: string }
  | TestMessage<CompareTestAction>;

export interface CompareState {
  source: CompareSource;
  /** Validation curves per exit instead of the mean over exits. */
  perExit: boolean;
  /** The curve chart's keyboard cursor: run index and point index (static exits first, then the curve). */
  cursor?: { run: number; point: number };
  embeddings?: EmbeddingSettings;
}

/** A point of a chart as drawn (read back from the SVG's data attributes). */
export interface DrawnPoint {
  x: number;
  y: number;
}

/** The panel's numbers and texts as shown (tests compare them with `met eval --json`). */
export interface CompareRendered {
  seq: number;
  task: 'classification' | 'regression';
  legend: string[];
  /** Runs not compared, as "name (why)". */
  skipped: string[];
  /** Accuracy (or MAE) versus GFLOPs: per run, the static exits (markers) and the dynamic curve (line). */
  curve: { name: string; static: (DrawnPoint & { exit: number })[]; dynamic: (DrawnPoint & { p: number })[] }[];
  /** Per-exit bars: [exit][run] values drawn. */
  bars: { exit: string; values: number[] }[];
  params: { name: string; trainable: number; text: string }[];
  training: { name: string; steps: number; epochs: number; valLines: number }[];
  diff: { keys: string[]; values: string[][] };
  table: { header: string[]; rows: { name: string; cells: string[]; best: boolean[] }[] };
  axes: { curveX: string; curveY: string; bars: string; val: string };
  readout: string | null;
  perExit: boolean;
  /** The embeddings shown: per run what its view drew; sameSample: every run drew the same images. */
  embeddings: { status: string; runs: string[]; sameSample: boolean; views: EmbeddingsSnapshot[] } | null;
}

export type CompareStateMessage = StateMessage<
  CompareState,
  CompareRendered | null,
  { error: string | null; exported?: { format: string; file: string | null } | null }
>;

export type CompareWebviewMessage =
  | CoreWebviewMessage<
      CompareState,
      CompareRendered | null,
      { error: string | null; exported?: { format: string; file: string | null } | null }
    >
  | { type: 'refresh' }
  | { type: 'export'; format: 'csv'; target?: string }
  | { type: 'export'; format: 'svg'; svg: string; target?: string }
  | { type: 'embeddings'; settings: EmbeddingSettings };
