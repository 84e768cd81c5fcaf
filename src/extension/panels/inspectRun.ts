// Inspect exits, run loading: what a panel shows for a run and a source of images, read from the
// run folder (config.json, thresholds.json, summary.json, predictions.json) and the image
// folders. The scores of other images come later from the engine (scoreStore.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { RUN_FILE, type RunConfigFile, type SplitPredictions, type ThresholdsFile } from '../../engine/run/runFolder';
import { listImageFiles } from '../../engine/data/files';
import { findTargetsFile, joinTargets, parseTargets, TARGET_FILE_NAMES } from '../../engine/data/targetsFile';
import { agreementConfidence } from '../../engine/infer/exitScores';
import type { InitMessage, SourceInfo } from '../../../webview-ui/inspect/protocol';
import { buildCurve, type CurveData } from '../inspectCurve';
import { log } from '../log';
import { norm } from '../runFiles';

export const TEST_SOURCE: SourceInfo = { kind: 'test', paths: [], label: 'test split' };

export const sourceKey = (s: SourceInfo) => (s.kind === 'test' ? 'test' : `paths:${s.paths.map(norm).join('\n')}`);

export async function readJsonFile<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT' ? `${file} does not exist (${what})` : `cannot read ${file} (${code ?? (e as Error).message})`,
    );
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** A source of explicit files or folders, labelled for the header. */
export function pathsSource(paths: string[]): SourceInfo {
  const abs = paths.map((p) => path.resolve(p));
  const rel = (p: string) => {
    const ws = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p));
    return ws ? path.relative(ws.uri.fsPath, p) || path.basename(p) : p;
  };
  const label =
    abs.length === 1
      ? rel(abs[0])
      : `${abs.length} selected: ${abs
          .slice(0, 3)
          .map((p) => path.basename(p))
          .join(', ')}${abs.length > 3 ? ', …' : ''}`;
  return { kind: 'paths', paths: abs, label };
}

/**
 * Regression targets of images picked from disk: the targets file (TARGET_FILE_NAMES, the order
 * met train looks in) at the root of a picked folder (or of the folder of picked files), or of
 * the nearest folder above it, joined as met train joins them. Images without an entry get NaN (shown without error).
 */
export async function folderTargets(
  paths: string[],
  files: string[],
): Promise<{ targets: Float64Array; from: string }> {
  const targets = new Float64Array(files.length).fill(NaN);
  const found = new Map<string, string | null>(); // folder -> its targets file (null: none)
  const fileOf = (dir: string): string | null => {
    if (!found.has(dir)) {
      let f: string | null = null;
      try {
        f = findTargetsFile(dir);
      } catch {
        f = null;
      }
      found.set(dir, f);
    }
    return found.get(dir)!;
  };
  // The picked folder, or the folder of picked files, or the nearest one above (3 levels at most)
  // with a targets file: a subfolder of a regression data folder finds the folder's targets.
  const roots = new Set<string>();
  for (const p of paths) {
    let dir = fs.statSync(p).isDirectory() ? p : path.dirname(p);
    for (let up = 0; up < 3 && !fileOf(dir); up++) {
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
    if (fileOf(dir)) roots.add(dir);
  }
  const used: string[] = [];
  const index = new Map(files.map((f, i) => [f, i]));
  for (const root of roots) {
    const tf = fileOf(root)!;
    const under = files.filter((f) => !path.relative(root, f).startsWith('..'));
    let joined;
    try {
      joined = joinTargets(
        root,
        under,
        parseTargets(await fs.promises.readFile(tf, 'utf8'), path.basename(tf)),
        path.basename(tf),
      );
    } catch (e) {
      log().warn(`Inspect exits: ${tf}: ${(e as Error).message}`);
      continue;
    }
    for (const s of joined.samples) {
      const i = index.get(s.file);
      if (i !== undefined) targets[i] = s.value;
    }
    used.push(vscode.workspace.asRelativePath(tf));
  }
  return { targets, from: used.length ? used.join(', ') : `no targets file (${TARGET_FILE_NAMES.join(', ')})` };
}

/** The run's stored test-split predictions (predictions.json `test`), null when it has none. */
export function testPredictions(runDir: string): Promise<SplitPredictions | null> {
  return readJsonFile<{ test: SplitPredictions }>(
    path.join(runDir, RUN_FILE.predictions),
    'the run has not been evaluated yet',
  ).then((p) => p.test ?? null);
}

/** What the 'init' message says about the images: files, labels or targets, stored scores (test split). */
type LoadedImages = Pick<
  InitMessage,
  | 'files'
  | 'names'
  | 'labels'
  | 'conf'
  | 'pred'
  | 'skipped'
  | 'task'
  | 'targets'
  | 'value'
  | 'targetScale'
  | 'targetsFrom'
>;

/** A loaded run and source: the run's settings and curve, and the images as the webview gets them. */
export interface Loaded extends LoadedImages {
  cf: RunConfigFile;
  K: number;
  curve: CurveData;
  gflops: number[];
}

/**
 * Reads the run and the images of `source`. The test split comes with its stored scores
 * (predictions.json, image-major [n * K] like every score array of the panel); other images
 * without (scored on demand). Throws with a message naming the file when something is missing.
 */
export async function loadRun(runDir: string, source: SourceInfo): Promise<Loaded> {
  const cf = await readJsonFile<RunConfigFile>(path.join(runDir, RUN_FILE.config), 'not a MET run folder');
  const K = cf.met.exits.length;
  const thFile = path.join(runDir, RUN_FILE.thresholds);
  const th = fs.existsSync(thFile) ? await readJsonFile<ThresholdsFile>(thFile, '') : null;
  const test = source.kind === 'test' || (th && !th.curve?.length) ? await testPredictions(runDir) : null;
  if (source.kind === 'test' && !test) throw new Error(`${runDir}: predictions.json has no test split`);
  const curve = buildCurve(th, K, test);
  const regression = cf.met?.task === 'regression';
  // Regression runs: the colour scale of agreement and error (the training targets' std).
  const reg = regression
    ? {
        task: 'regression' as const,
        targetScale: typeof cf.met.targetStd === 'number' && cf.met.targetStd > 0 ? cf.met.targetStd : 1,
      }
    : {};
  const gflops =
    th?.gflops?.length === K
      ? th.gflops
      : ((
          await readJsonFile<{ exits: { gflops: number }[] }>(
            path.join(runDir, 'summary.json'),
            'the run has not finished',
          ).catch(() => null)
        )?.exits.map((e) => e.gflops) ?? new Array<number>(K).fill(NaN));
  let loaded: Loaded;
  if (source.kind === 'test') {
    const t = test!;
    const n = t.files.length;
    const root = cf.dataset?.root ?? '';
    const names = t.files.map((f) => (root ? path.relative(root, f) : path.basename(f)));
    // Regression (predictions.json: pred = values, labels = targets): the agreement is
    // recomputed from the values as exitScores does (JSON stores exit 1's NaN as null).
    const agree = regression ? agreementConfidence(t.pred) : null;
    // predictions.json keeps one array per exit ([K][n]); the panel's arrays are image-major
    // [n * K] like the engine's inspect/score results (value of image i at exit j: i * K + j).
    const conf = new Float32Array(n * K);
    const pred = new Int32Array(n * K).fill(-1);
    const value = regression ? new Float32Array(n * K) : undefined;
    for (let j = 0; j < K; j++) {
      const c = agree ? agree[j] : t.conf[j];
      const y = t.pred[j];
      for (let i = 0; i < n; i++) {
        conf[i * K + j] = c[i];
        if (value) value[i * K + j] = y[i];
        else pred[i * K + j] = y[i];
      }
    }
    loaded = regression
      ? {
          cf,
          K,
          curve,
          gflops,
          files: t.files,
          names,
          labels: new Int32Array(n).fill(-1),
          conf,
          pred,
          skipped: 0,
          ...reg,
          targets: Float64Array.from(t.labels, (v) => (typeof v === 'number' ? v : NaN)),
          targetsFrom: 'the targets met train read',
          value,
        }
      : { cf, K, curve, gflops, files: t.files, names, labels: Int32Array.from(t.labels), conf, pred, skipped: 0 };
  } else {
    const listed = await listImageFiles(source.paths);
    const files = listed.files.map((f) => path.resolve(f));
    const base = source.paths.length === 1 && fs.statSync(source.paths[0]).isDirectory() ? source.paths[0] : undefined;
    const names = files.map((f) => {
      if (base) return path.relative(base, f);
      const ws = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(f));
      return ws ? path.relative(ws.uri.fsPath, f) : path.basename(f);
    });
    // A class folder named like one of the run's classes gives the label (as met predict --eval and met eval --data).
    const labels = regression
      ? new Int32Array(files.length).fill(-1)
      : Int32Array.from(files, (f) => cf.classes.indexOf(path.basename(path.dirname(f))));
    // Regression: targets from a targets file next to the images (as met train finds one), when there is one.
    const t = regression ? await folderTargets(source.paths, files) : null;
    loaded = {
      cf,
      K,
      curve,
      gflops,
      files,
      names,
      labels,
      skipped: listed.skipped.length,
      ...reg,
      ...(t ? { targets: t.targets, targetsFrom: t.from } : {}),
    };
    if (!files.length)
      throw new Error(
        `no image files in ${source.paths.join(', ')}${listed.skipped.length ? ` (${listed.skipped.length} other files skipped)` : ''}`,
      );
  }
  return loaded;
}
