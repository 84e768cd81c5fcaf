// Regression datasets: a folder of images plus a file mapping each image to a number.
//
// Where the mapping comes from (first match wins):
//   1. `targets` in met.config.json / `--targets FILE` (relative paths: from the working
//      directory, as every other path flag);
//   2. at the root of the data folder, in this order: targets.csv, targets.json, labels.csv,
//      labels.json, values.csv, values.json.
//
// Formats:
//   CSV   one `file,value` pair per line. A first line whose value is not a number (e.g.
//         `file,value` or `image,count`) is a header. Blank lines and lines starting with '#'
//         are ignored. Fields may be double-quoted ("a,b.png",3); a line with other than two
//         fields is an error naming the file and line.
//   JSON  an object {"file": value, ...}. A value may be a number or a numeric string.
// `file` is the image's path relative to the data folder with '/' separators (a leading './'
// and Windows '\' are accepted), or its bare file name when that is unique in the folder.
//
// Per-entry problems do not stop a run, exactly like unreadable images: an empty or non-numeric
// value, or an image with no entry, becomes a skipped file (with the file and line that caused
// it) in the run's report.json. Structural problems (unparseable JSON, wrong field count, a file
// listed twice) are errors naming the file and the line or key, since guessing would silently
// train on wrong targets.
//
// The split is deterministic from the seed: the images with a value are sorted (code point
// order of the relative path), shuffled with a PRNG seeded by (seed, "regression") and cut
// train / val / test by the same rounding as a class folder (splitCounts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../tensor';
import { listImageFiles } from './files';
import { type SkippedFile, splitClass } from './folder';
import { findTargetsFile, joinTargets, parseTargets, type RegressionSample } from './targetsFile';

export interface RegressionDataset {
  root: string;
  /** The targets file used (absolute). */
  targetsFile: string;
  train: RegressionSample[];
  val: RegressionSample[];
  test: RegressionSample[];
  skipped: SkippedFile[];
  warnings: string[];
  layout: 'regression';
  notes: string[];
  /** Always empty: a regression run has no classes (kept so code that lists classes works). */
  classes: string[];
}

/** Scans a regression folder: images anywhere below `root`, values from the targets file, a seeded split. */
export async function scanRegression(spec: {
  root: string;
  targets?: string;
  split?: [number, number, number];
  seed?: number;
}): Promise<RegressionDataset> {
  const root = path.resolve(spec.root);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new UserError(`${root}: not a folder`);
  const file = findTargetsFile(root, spec.targets);
  const name = path.relative(process.cwd(), file) || file;
  const entries = parseTargets(fs.readFileSync(file, 'utf8'), name);
  const listed = await listImageFiles([root]);
  const images = listed.files.filter((f) => path.resolve(f) !== file);
  const j = joinTargets(root, images, entries, path.basename(file));
  const split = spec.split ?? [70, 10, 20];
  const byFile = new Map(j.samples.map((s) => [s.file, s]));
  const relKey = (f: string) => path.relative(root, f).split(path.sep).join('/').normalize('NFC');
  const [tr, va, te] = splitClass(
    j.samples.map((s) => s.file),
    'regression',
    split,
    spec.seed ?? 0,
    relKey,
  );
  const pick = (fs_: string[]) => fs_.map((f) => byFile.get(f)!);
  if (!j.samples.length) throw new UserError(`${root}: no image has a value in ${name}`);
  return {
    root,
    targetsFile: file,
    train: pick(tr),
    val: pick(va),
    test: pick(te),
    // The targets file itself is no image: not worth a "skipped" line.
    skipped: [...listed.skipped.filter((x) => path.resolve(x.file) !== file), ...j.skipped],
    warnings: j.warnings,
    layout: 'regression',
    notes: [
      `regression: ${j.samples.length} images with values from ${name}, split ${split.join('/')} with seed ${spec.seed ?? 0}`,
    ],
    classes: [],
  };
}
