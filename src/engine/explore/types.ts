// Requests and results of the exploration panels' engine methods (inspect/score, inspect/thumbs,
// inspect/attention, similarity/compute, embeddings/compute). They live with the engine code that computes them; src/protocol.ts, above
// the engine, names them in its RequestMap. Numbers travel as typed arrays (Node IPC's structured
// clone keeps them); embeddings/compute's few coordinates per image are plain number lists.

export interface ScoreParams {
  /** A finished run folder (its config.json, trainable.safetensors, thresholds.json). */
  runDir: string;
  /** Absolute image files, in the order the results come back. An empty list only loads the
   *  run (a panel can warm the engine up) and returns its classes, layers and GFLOPs. */
  files: string[];
  /** Classes kept per exit, most probable first (default 3). */
  topK?: number;
}

/**
 * Per image and exit of a run: n = files.length, K = exits, k = topK. Every per-exit array is
 * image-major: image i at exit j is at i * K + j ([n * K]), rank t of its top-k at
 * (i * K + j) * k + t ([n * K * k]). The Inspect exits panel keeps this layout in all its
 * messages (webview-ui/inspect/protocol.ts); only the run folder's predictions.json is per exit.
 */
export interface ScoreResult {
  files: string[];
  /** Class names of the run (index = class id). */
  classes: string[];
  /** 1-based layer of each exit. */
  layers: number[];
  /** Cumulative GFLOPs per image to reach each exit. */
  gflops: number[];
  /** 1 where the image was decoded and scored; 0 where it was skipped (see `skipped`). */
  ok: Uint8Array; // [n]
  /** Confidence (max softmax probability) and predicted class: [n * K], image-major. Regression
   *  runs: the agreement with the previous exit, -|y_j - y_(j-1)| (NaN at exit 1), and -1. */
  conf: Float32Array;
  pred: Int32Array;
  /** 'regression': the run predicts a number; `value` holds it per exit. */
  task?: 'regression';
  /** Regression runs: the predicted value (target units) per exit, [n * K] image-major. */
  value?: Float32Array;
  /** Top-k probabilities and classes: [n * K * k] (k = 0 for regression runs). */
  topProb: Float32Array;
  topClass: Int32Array;
  /** The 0-based exit each image takes under the run's chosen thresholds ([n]; -1 when skipped). */
  exitTaken: Int32Array;
  /** Unreadable files with the reason (a bad file never fails the request). */
  skipped: { file: string; reason: string }[];
  /** The operating point `exitTaken` follows (thresholds.json `chosen`): one threshold per exit
   *  of the network (unused exits +Infinity, the last used -Infinity). */
  chosen?: { p: number | null; perExit: number[]; source: string };
}

export interface ThumbsParams {
  files: string[];
  /** Longest side in pixels (default 96). */
  size?: number;
  /** Folder for the cached thumbnails (created); names derive from path, size and mtime. */
  cacheDir: string;
  /** Thumbnail format (default 'webp'; 'png' is lossless, larger and slower to make). */
  format?: 'webp' | 'png';
}

export interface ThumbsResult {
  /** Thumbnail file per input (null: unreadable, reason in `skipped`). */
  thumbs: (string | null)[];
  skipped: { file: string; reason: string }[];
}

export interface AttentionParams {
  /** A finished run folder. */
  runDir: string;
  /** One image file (absolute). */
  file: string;
}

/** Where one exit's token attends over the patch grid (src/engine/explore/attention.ts). */
export interface ExitAttention {
  /** 0-based exit and the 1-based layer l_j it follows (the last layer its token passes). */
  exit: number;
  layer: number;
  /** [gh * gw] row-major over the patch grid: exit j's token's attention at layer l_j, averaged
   *  over heads, patch columns only (1 - sum is what it puts on the exit tokens). */
  last: Float32Array;
  /** [gh * gw]: exit j's token's row of the attention rollout R = Ā_{l_j} ··· Ā_1
   *  (Ā = 0.5 mean_heads(A) + 0.5 I, rows renormalised), patch columns only (1 - sum is what
   *  flows from the exit tokens as they entered layer 1). */
  rollout: Float32Array;
}

export interface AttentionResult {
  file: string;
  /** Patch grid: rows, columns. */
  grid: [number, number];
  heads: number;
  /** The image as the network saw it (resized, cropped; normalisation undone), to draw the maps
   *  over: size x size pixels, RGBA bytes [size * size * 4]. */
  size: number;
  image: Uint8Array;
  /** One per exit of the run, in order. */
  exits: ExitAttention[];
}

export interface SimilarityParams {
  runDir: string;
  /** 0-based exits to compute (e.g. two for side-by-side). */
  exits: number[];
  /** Images per class in the class-balanced sample (default 8). */
  perClass?: number;
  /** Split of the run's data to sample from (default 'val'). */
  split?: 'train' | 'val' | 'test';
  /** Seed of the sample (default the run's seed). */
  seed?: number;
}

export interface SimilarityExit {
  /** 0-based exit (as requested) and the 1-based layer it follows. */
  exit: number;
  layer: number;
  /** n x n row-major matrices over the sample, in the order of `files` (class-sorted):
   *  S^w (intra-class similarity weights), S^b (inter-class), and the squared distances of this
   *  exit's head inputs z_j = LN_f(c_j), exactly as graph regularization uses them in training
   *  (src/engine/explore/similarity.ts grMatrices, with the run's flags: `dist` is Euclidean
   *  rather than squared when the run has grSquared off, and divided by D with grNormalize). */
  sw: Float32Array;
  sb: Float32Array;
  dist: Float32Array;
  /** The graph-regularization term these matrices give (what training adds, times lambda). */
  gr: number;
}

export interface SimilarityResult {
  /** Class-sorted sample. */
  files: string[];
  labels: Int32Array; // [n]
  classes: string[];
  /** First index of each class in the sample, plus n at the end (class bands on the axes). */
  classStarts: number[];
  exits: SimilarityExit[];
  /** Sampled files that could not be decoded (replaced by other files of their class). */
  skipped?: { file: string; reason: string }[];
  /** The split and seed the sample was drawn with (the defaults filled in). */
  split?: 'train' | 'val' | 'test';
  seed?: number;
}

export interface EmbeddingsParams {
  runDir: string;
  /** Images per class in the class-balanced sample (default 8, as the similarity panel's). */
  perClass?: number;
  /** Split of the run's data to sample from (default 'test'). */
  split?: 'train' | 'val' | 'test';
  /** Seed of the sample (default the run's seed). */
  seed?: number;
  /** Further images (absolute) to place on the sample's axes without moving them: each one not
   *  already in the sample comes back in `extra`, projected onto every exit's principal axes. */
  files?: string[];
}

export interface EmbeddingsExit {
  /** 0-based exit and the 1-based layer it follows. */
  exit: number;
  layer: number;
  /** [n * 2] row-major: sample i at (coords[2i], coords[2i + 1]) on this exit's first two
   *  principal axes of its head inputs z_j = LN_f(c_j) (centred PCA, float64; see pca2 in
   *  src/engine/explore/embeddings.ts for the sign convention). */
  coords: number[];
  /** [extra.length * 2]: the extra files on the same axes (the sample's mean and axes). */
  extraCoords: number[];
  /** Share of the sample's total variance along PC1 and PC2 (in [0, 1]). */
  explained: [number, number];
}

export interface EmbeddingsResult {
  /** Class names (index = label). */
  classes: string[];
  /** Class-sorted sample, the same at every exit (similarity/compute's sample for the same
   *  split, perClass and seed). */
  sample: { file: string; label: number }[];
  /** `files` not in the sample, in the order asked (unreadable ones are in `skipped`); label:
   *  the class named by the image's folder, -1 when no class folder names it. */
  extra: { file: string; label: number }[];
  /** One per exit of the run, in order. */
  exits: EmbeddingsExit[];
  skipped: { file: string; reason: string }[];
  /** The settings the sample was drawn with (the defaults filled in). */
  split: 'train' | 'val' | 'test';
  perClass: number;
  seed: number;
}
