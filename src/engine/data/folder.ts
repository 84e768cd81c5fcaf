// Image-folder datasets: finding classes and files, checking them cheaply, and splitting
// them into train / val / test deterministically.
//
// Two layouts are recognised:
//   class-folders   root/<class>/**/<image>                     (torchvision ImageFolder)
//   split-folders   root/{train,val,test}/<class>/**/<image>    (any subset with train/)
// `valid/` and `validation/` are accepted as names for val/ (Roboflow and Kaggle exports use
// them). Images may sit at any depth inside a class folder; names starting with '.' are ignored.
// Symbolic links are followed, but a file counts once, by its real path, in the class folder
// that holds it (byRealPath); links that lead out of the root are reported (Dataset.external).
//
// Class names are the folder names in Unicode NFC (so a dataset copied from macOS, whose file
// system hands out NFD names, gives the same classes as on Linux), sorted by code point: a
// plain, locale-independent order, so class indices are the same on every machine.
//
// Splits (see splitCounts for the rounding):
//  - class-folders: each class is split train/val/test by spec.split (default 70/10/20).
//  - split-folders: train/, val/, test/ are used as they are. Without val/, a validation set
//    is carved out of train/ by the same per-class procedure with the val share taken
//    relative to train + val (70/10/20 -> 12.5% of each class of train/); test/ is never
//    carved: without test/ the test split is empty. Dataset.notes says which happened.
// Per class, its files are sorted (code point order of the path relative to the root, with
// '/' separators, NFC), then shuffled with a PRNG seeded from (seed, class name). Seeding per
// class keeps a class's split unchanged when other classes are added or removed.

import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../tensor';
import { listImageFiles, SPLIT_DIR_NAMES } from './files';
import { ImageError, sniffImage } from './image';
import { hashInts, hashString, mulberry32, shuffleInPlace } from './random';

export interface Sample {
  file: string;
  /** Index into Dataset.classes. */
  label: number;
}

export interface SkippedFile {
  file: string;
  reason: string;
}

/** A symbolic link inside the dataset whose target lies outside its root (listed in report.json). */
export interface ExternalLink {
  link: string;
  /** Real path of what it points to. */
  target: string;
}

export interface DatasetSpec {
  root: string;
  /**
   * train, val, test percentages (sum 100); default [70, 10, 20]. [0, 0, 100] puts every image
   * in test (evaluating on another folder).
   */
  split?: [number, number, number];
  /** Seed of the split; default 0. */
  seed?: number;
}

export type DatasetLayout = 'class-folders' | 'split-folders';

export interface Dataset {
  /** Absolute path of the dataset folder. */
  root: string;
  /** Class names; a sample's label indexes this array. */
  classes: string[];
  /** Samples per split, grouped by class (label order), files in sorted order within a class. */
  train: Sample[];
  val: Sample[];
  test: Sample[];
  /** Files not used, with why (not an image, empty, unreadable, not inside a class folder...). */
  skipped: SkippedFile[];
  /** Problems worth showing (tiny classes, ignored folders); the dataset is still usable. */
  warnings: string[];
  layout: DatasetLayout;
  /** How the splits were made, in words (e.g. that val was carved out of train/). */
  notes: string[];
  /** Symbolic links that lead out of the root, whose images are used (the run lists them). */
  external: ExternalLink[];
}

export interface ScanOptions {
  /** Header checks in flight; default 4. */
  concurrency?: number;
  /** Called as files are checked: (checked, total). */
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_SPLIT: readonly [number, number, number] = [70, 10, 20];

type SplitName = 'train' | 'val' | 'test';

const splitOf = (name: string): SplitName | undefined => SPLIT_DIR_NAMES.get(name);

/**
 * Code-point order. JavaScript's < compares UTF-16 code units, which puts characters beyond
 * U+FFFF (stored as surrogates D800-DFFF) before U+E000-U+FFFF; remapping those two ranges
 * when comparing restores code-point order.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x += x <= 0xdfff ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y <= 0xdfff ? 0x2000 : -0x800;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * How many of a class's n images go to [train, val, test] for percentages `pct`:
 *   val = round(n * pct[1] / 100), test = round(n * pct[2] / 100)  (halves round up);
 *   when n >= 3, a split with a percentage > 0 gets at least 1 image (so small classes still
 *   appear in val and test);
 *   train keeps at least 1 when its percentage is > 0 (and val + test never exceed n): while
 *   that fails, the larger of val/test gives one back (test on a tie, as validation matters
 *   during training).
 * So n = 1 or 2 stays (mostly) in train; with 70/10/20, n = 3 -> 1/1/1, n = 10 -> 7/1/2,
 * n = 25 -> 17/3/5 (2.5 rounds up to 3). [0, 0, 100] puts everything in test.
 */
export function splitCounts(n: number, pct: readonly [number, number, number]): [number, number, number] {
  let nVal = pct[1] > 0 ? Math.floor((n * pct[1]) / 100 + 0.5) : 0;
  let nTest = pct[2] > 0 ? Math.floor((n * pct[2]) / 100 + 0.5) : 0;
  if (n >= 3) {
    if (pct[1] > 0) nVal = Math.max(nVal, 1);
    if (pct[2] > 0) nTest = Math.max(nTest, 1);
  }
  const minTrain = pct[0] > 0 && n > 0 ? 1 : 0;
  while (n - nVal - nTest < minTrain) {
    if (nVal > nTest) nVal--;
    else nTest--;
  }
  return [n - nVal - nTest, nVal, nTest];
}

/**
 * Splits one class's files by splitCounts: sort, shuffle with a PRNG seeded by
 * (seed, class name), cut in train, val, test order. Each part is returned in sorted order.
 */
export function splitClass(
  files: readonly string[],
  className: string,
  pct: readonly [number, number, number],
  seed: number,
  sortKey: (f: string) => string = (f) => f,
): [string[], string[], string[]] {
  const sorted = files.slice().sort((a, b) => compareCodePoints(sortKey(a), sortKey(b)));
  const order = shuffleInPlace(
    sorted.map((_, i) => i),
    mulberry32(hashInts(seed, hashString(className))),
  );
  const [nTrain, nVal] = splitCounts(sorted.length, pct);
  const pick = (idx: number[]): string[] => idx.sort((a, b) => a - b).map((i) => sorted[i]);
  return [pick(order.slice(0, nTrain)), pick(order.slice(nTrain, nTrain + nVal)), pick(order.slice(nTrain + nVal))];
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Entry {
  name: string;
  full: string;
}

interface Listing {
  dirs: Entry[];
  files: Entry[];
  /** Entries that are neither (broken links, sockets...). */
  skipped: SkippedFile[];
}

/** Non-hidden entries of `dir`, sorted by name, with symbolic links resolved. */
async function listDir(dir: string): Promise<Listing> {
  let ents: fs.Dirent[];
  try {
    ents = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT') throw new UserError(`dataset folder not found: ${dir}`);
    if (code === 'ENOTDIR')
      throw new UserError(`${dir}: not a folder (a dataset is a folder with one sub-folder per class)`);
    throw new UserError(`${dir}: cannot read folder (${errMessage(e)})`);
  }
  ents.sort((a, b) => compareCodePoints(a.name, b.name));
  const out: Listing = { dirs: [], files: [], skipped: [] };
  for (const ent of ents) {
    if (ent.name.startsWith('.')) continue;
    const full = path.join(dir, ent.name);
    let isDir = ent.isDirectory();
    let isFile = ent.isFile();
    if (ent.isSymbolicLink()) {
      try {
        const st = await fs.promises.stat(full);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        out.skipped.push({ file: full, reason: 'broken symbolic link' });
        continue;
      }
    }
    if (isDir) out.dirs.push({ name: ent.name, full });
    else if (isFile) out.files.push({ name: ent.name, full });
    else out.skipped.push({ file: full, reason: 'not a regular file' });
  }
  return out;
}

function validateSpec(spec: DatasetSpec): { pct: [number, number, number]; seed: number } {
  if (typeof spec.root !== 'string' || spec.root === '') throw new UserError('dataset folder not given');
  const pct = spec.split ?? [...DEFAULT_SPLIT];
  if (
    !Array.isArray(pct) ||
    pct.length !== 3 ||
    !pct.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)
  ) {
    throw new UserError(`split must be three percentages (train, val, test), got ${JSON.stringify(spec.split)}`);
  }
  if (Math.abs(pct[0] + pct[1] + pct[2] - 100) > 1e-6)
    throw new UserError(`split percentages must add up to 100, got ${pct.join(' + ')} = ${pct[0] + pct[1] + pct[2]}`);
  const seed = spec.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new UserError(`seed must be an integer, got ${seed}`);
  return { pct: [pct[0], pct[1], pct[2]], seed };
}

const quoteList = (xs: readonly string[], max = 5): string =>
  xs
    .slice(0, max)
    .map((x) => `'${x}'`)
    .join(', ') + (xs.length > max ? `, ... (${xs.length - max} more)` : '');

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

const fmtPct = (x: number): string => String(Math.round(x * 1000) / 1000);

interface Candidate {
  file: string;
  /** Class name (NFC). */
  cls: string;
  /** Split folder it came from; null in the class-folders layout. */
  split: SplitName | null;
  /** Index of its class folder in classDirs. */
  dir: number;
}

const inside = (dir: string, p: string): boolean => {
  const r = path.relative(dir, p);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
};

async function realOr(p: string): Promise<string> {
  try {
    return await fs.promises.realpath(p);
  } catch {
    return path.resolve(p);
  }
}

/**
 * Files by real path: symbolic links must not relabel or repeat images. Of the candidates that
 * are one file, the one in its own class folder is kept: the one reached without any link, else
 * the one whose path does not pass through another class folder, else the one whose class
 * folder really holds it. Copies in other class folders are skipped with a
 * warning naming both paths (skipped, not refused: a link such as `a/link -> ../b` or a link to
 * the root is a common slip, and the rest of the dataset is fine); when no class folder owns
 * the file, its label is ambiguous and every copy is skipped. A second path to a file within
 * the same class folder is dropped quietly (listed as skipped). Also returns the links that
 * lead out of the root: their images are used, and the run's report.json lists them.
 */
async function byRealPath(
  root: string,
  candidates: Candidate[],
  dirLabels: string[],
  dirFull: string[],
  dirReal: string[],
): Promise<{ kept: Candidate[]; skipped: SkippedFile[]; warnings: string[]; external: ExternalLink[] }> {
  const realRoot = await realOr(root);
  const reals: string[] = [];
  for (let i = 0; i < candidates.length; i += 256)
    reals.push(...(await Promise.all(candidates.slice(i, i + 256).map((c) => realOr(c.file)))));
  const groups = new Map<string, number[]>();
  reals.forEach((r, i) => {
    const g = groups.get(r);
    if (g) g.push(i);
    else groups.set(r, [i]);
  });
  // Whether a candidate's path from its class folder passes through another class folder
  // (b/up -> the root, then a/...): such a path borrows that class's files.
  const dirOf = new Map<string, string>();
  const clean = async (i: number): Promise<boolean> => {
    const c = candidates[i];
    let p = dirFull[c.dir];
    for (const part of path.relative(p, path.dirname(c.file)).split(path.sep).filter(Boolean)) {
      p = path.join(p, part);
      let r = dirOf.get(p);
      if (r === undefined) dirOf.set(p, (r = await realOr(p)));
      const rr = r;
      if (dirReal.some((d, j) => j !== c.dir && inside(d, rr))) return false;
    }
    return true;
  };
  const drop = new Set<number>();
  const skipped: SkippedFile[] = [];
  const clashes: string[] = [];
  for (const [real, g] of groups) {
    if (g.length < 2) continue;
    const dirs = new Set(g.map((i) => candidates[i].dir));
    let owner: number | undefined;
    if (dirs.size === 1) owner = g[0];
    else {
      const direct = g.filter((i) => path.relative(root, candidates[i].file) === path.relative(realRoot, real));
      const own: number[] = [];
      for (const i of g) if (await clean(i)) own.push(i);
      const holders = g.filter((i) => inside(dirReal[candidates[i].dir], real));
      for (const pick of [direct, own, holders])
        if (pick.length && new Set(pick.map((i) => candidates[i].dir)).size === 1) {
          owner = pick[0];
          break;
        }
    }
    for (const i of g) {
      if (i === owner) continue;
      drop.add(i);
      const c = candidates[i];
      if (owner === undefined) {
        const others = g.filter((j) => j !== i).map((j) => `${candidates[j].file} ('${dirLabels[candidates[j].dir]}')`);
        skipped.push({
          file: c.file,
          reason: `the same file as ${others.join(', ')}: no class folder holds it, so its class is ambiguous`,
        });
        clashes.push(`${c.file} ('${dirLabels[c.dir]}') and ${others.join(', ')}`);
      } else {
        const o = candidates[owner];
        const same = o.dir === c.dir;
        skipped.push({
          file: c.file,
          reason: same
            ? `the same file as ${o.file} (reached twice through a symbolic link)`
            : `the same file as ${o.file} (class '${dirLabels[o.dir]}'); a file is used in one class only`,
        });
        if (!same) clashes.push(`${c.file} ('${dirLabels[c.dir]}') is ${o.file} ('${dirLabels[o.dir]}')`);
      }
    }
  }
  const warnings: string[] = [];
  if (clashes.length)
    warnings.push(
      `${plural(clashes.length, 'file')} reached under two class folders through symbolic links ${clashes.length === 1 ? 'was' : 'were'} skipped there: ` +
        clashes.slice(0, 5).join('; ') +
        (clashes.length > 5 ? `; ... (${clashes.length - 5} more, listed with the skipped files)` : ''),
    );
  // Links out of the root: the first component below the root, per file, that is a link
  // resolving outside it (cached per path prefix; only files whose real path is outside).
  const external: ExternalLink[] = [];
  const seen = new Map<string, boolean>();
  for (let i = 0; i < candidates.length; i++) {
    if (drop.has(i) || inside(realRoot, reals[i])) continue;
    const parts = path.relative(root, candidates[i].file).split(path.sep);
    let p = root;
    for (const part of parts) {
      p = path.join(p, part);
      let hit = seen.get(p);
      if (hit === undefined) {
        hit = false;
        try {
          if ((await fs.promises.lstat(p)).isSymbolicLink()) {
            const target = await realOr(p);
            if (!inside(realRoot, target)) {
              hit = true;
              external.push({ link: p, target });
            }
          }
        } catch {
          // Unreadable: the file's own checks report it.
        }
        seen.set(p, hit);
      }
      if (hit) break;
    }
  }
  return { kept: candidates.filter((_, i) => !drop.has(i)), skipped, warnings, external };
}

/**
 * Scans a dataset folder: finds the layout and classes, checks every image file cheaply
 * (extension, then the header via sharp, reading only the start of the file), and splits.
 * Bad files are listed in `skipped` and never stop the scan; files whose pixel data turns out
 * corrupt only at decode time are reported by ImageCache.prepare. Throws UserError when the
 * folder is missing or empty, has no images, or has fewer than 2 classes.
 */
export async function scanDataset(spec: DatasetSpec, opts: ScanOptions = {}): Promise<Dataset> {
  const { pct, seed } = validateSpec(spec);
  const root = path.resolve(spec.root);
  const concurrency = opts.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new UserError(`concurrency must be a positive integer, got ${concurrency}`);

  const top = await listDir(root);
  const skipped: SkippedFile[] = [...top.skipped];
  const warnings: string[] = [];
  const notes: string[] = [];
  if (top.dirs.length === 0 && top.files.length === 0 && top.skipped.length === 0) {
    throw new UserError(
      `${root}: the folder is empty; expected one sub-folder per class (e.g. ${path.join(root, 'cats')}), or train/ (and optionally val/, test/) folders holding them`,
    );
  }

  // Layout: split folders when train/ exists. val/ or test/ without train/ is an error when
  // they hold sub-folders (a split layout missing train/); holding images directly, they are
  // simply classes that happen to be called 'test' or 'val'.
  const splitDirs = top.dirs.flatMap((d) => {
    const split = splitOf(d.name);
    return split ? [{ ...d, split }] : [];
  });
  const hasTrain = splitDirs.some((d) => d.split === 'train');
  if (!hasTrain) {
    for (const d of splitDirs) {
      if ((await listDir(d.full)).dirs.length > 0) {
        throw new UserError(
          `${root}: found ${d.name}/ with class folders but no train/; a train/val/test layout needs train/ (or use one folder per class directly in ${root})`,
        );
      }
    }
  }
  const layout: DatasetLayout = hasTrain ? 'split-folders' : 'class-folders';

  // Class folders, as (split, folder) pairs.
  const classDirs: { split: SplitName | null; dir: Entry; label: string }[] = [];
  const rootImages = top.files.length;
  if (layout === 'class-folders') {
    for (const f of top.files) skipped.push({ file: f.full, reason: 'not inside a class folder' });
    for (const d of top.dirs) classDirs.push({ split: null, dir: d, label: d.name });
  } else {
    const seenSplit = new Map<SplitName, string>();
    for (const d of splitDirs) {
      const prev = seenSplit.get(d.split);
      if (prev !== undefined)
        throw new UserError(
          `${root}: both ${prev}/ and ${d.name}/ found; keep only one folder for the ${d.split} split`,
        );
      seenSplit.set(d.split, d.name);
    }
    for (const f of top.files) skipped.push({ file: f.full, reason: 'not inside a train/, val/ or test/ folder' });
    const others = top.dirs.filter((d) => splitOf(d.name) === undefined);
    if (others.length > 0)
      warnings.push(
        `ignored ${plural(others.length, 'folder')} next to train/ (${quoteList(others.map((d) => d.name))}): with a train/ folder only train/, val/ and test/ are read`,
      );
    for (const d of splitDirs) {
      const l = await listDir(d.full);
      skipped.push(...l.skipped);
      for (const f of l.files) skipped.push({ file: f.full, reason: 'not inside a class folder' });
      for (const c of l.dirs) classDirs.push({ split: d.split, dir: c, label: `${d.name}/${c.name}` });
    }
    if (!classDirs.some((c) => c.split === 'train')) {
      throw new UserError(
        `${path.join(root, seenSplit.get('train') ?? 'train')}: no class folders; in a train/val/test layout each split holds one sub-folder per class`,
      );
    }
  }

  // Candidate files (by extension), one per real file, then the header check.
  const listedAll: Candidate[] = [];
  for (const [dir, c] of classDirs.entries()) {
    const listed = await listImageFiles([c.dir.full]);
    skipped.push(...listed.skipped);
    const cls = c.dir.name.normalize('NFC');
    for (const file of listed.files) listedAll.push({ file, cls, split: c.split, dir });
  }
  const real = await byRealPath(
    root,
    listedAll,
    classDirs.map((c) => c.label),
    classDirs.map((c) => c.dir.full),
    await Promise.all(classDirs.map((c) => realOr(c.dir.full))),
  );
  const candidates = real.kept;
  skipped.push(...real.skipped);
  warnings.push(...real.warnings);
  const good = new Array<boolean>(candidates.length).fill(false);
  const reasons = new Array<string | null>(candidates.length).fill(null);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < candidates.length) {
      const i = next++;
      try {
        await sniffImage(candidates[i].file);
        good[i] = true;
      } catch (e) {
        reasons[i] = e instanceof ImageError ? e.reason : errMessage(e).replace(/\s+/g, ' ').trim();
      }
      done++;
      opts.onProgress?.(done, candidates.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, candidates.length) }, () => worker()));

  // Group the usable files: class -> split -> files.
  const byClass = new Map<string, Record<SplitName | 'all', string[]>>();
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    if (!good[i]) {
      skipped.push({ file: c.file, reason: reasons[i] ?? 'unreadable' });
      continue;
    }
    let g = byClass.get(c.cls);
    if (!g) byClass.set(c.cls, (g = { train: [], val: [], test: [], all: [] }));
    g[c.split ?? 'all'].push(c.file);
  }
  const classes = [...byClass.keys()].sort(compareCodePoints);
  const usable = candidates.length - reasons.filter((r) => r !== null).length;

  if (usable === 0) {
    if (classDirs.length === 0) {
      throw new UserError(
        rootImages > 0
          ? `${root}: found no class folders, only ${plural(rootImages, 'file')} directly in the folder; put each class's images in its own sub-folder (e.g. ${path.join(root, 'cats')})`
          : `${root}: found no class folders; expected one sub-folder per class`,
      );
    }
    const bad = reasons.findIndex((r) => r !== null);
    const example = bad >= 0 ? { file: candidates[bad].file, reason: reasons[bad] } : skipped[0];
    throw new UserError(
      `${root}: no images found in ${plural(classDirs.length, 'class folder')} (${quoteList(classDirs.map((c) => c.label))})` +
        (example ? `; ${plural(skipped.length, 'file')} skipped, e.g. ${example.file}: ${example.reason}` : ''),
    );
  }
  if (classes.length < 2) {
    const names = new Set(classDirs.map((c) => c.dir.name.normalize('NFC')));
    const what = names.size > classes.length ? ' with usable images' : '';
    const where = layout === 'split-folders' ? ` in ${splitDirs.map((d) => `${d.name}/`).join(', ')}` : '';
    throw new UserError(
      `${root}: found ${plural(classes.length, 'class folder')}${what}${where} (${quoteList(classes)}); fine-tuning needs at least 2`,
    );
  }

  for (const c of classDirs) {
    const cls = c.dir.name.normalize('NFC');
    if (!byClass.has(cls)) warnings.push(`folder '${c.label}' has no usable images; it is not used as a class`);
  }

  // Splits.
  const label = new Map(classes.map((c, i) => [c, i]));
  const train: Sample[] = [];
  const val: Sample[] = [];
  const test: Sample[] = [];
  // Sort key of a file: its path below the root with '/' separators, in NFC, so the same
  // dataset sorts (and so splits) identically on Windows, macOS (NFD names) and Linux.
  const rel = (f: string): string => path.relative(root, f).split(path.sep).join('/').normalize('NFC');
  const push = (out: Sample[], files: string[], cls: string): void => {
    const l = label.get(cls)!;
    for (const file of files) out.push({ file, label: l });
  };
  const sortFiles = (files: string[]): string[] => files.slice().sort((a, b) => compareCodePoints(rel(a), rel(b)));

  if (layout === 'class-folders') {
    for (const cls of classes) {
      const [tr, va, te] = splitClass(byClass.get(cls)!.all, cls, pct, seed, rel);
      push(train, tr, cls);
      push(val, va, cls);
      push(test, te, cls);
      const n = tr.length + va.length + te.length;
      if (n < 2)
        warnings.push(
          `class '${cls}' has only ${plural(n, 'image')}; a class needs at least 2 (one to train on, one to check)`,
        );
    }
    notes.push(`split ${pct.map(fmtPct).join('/')} (train/val/test %) within each class, seed ${seed}`);
  } else {
    const hasVal = splitDirs.some((d) => d.split === 'val');
    const hasTest = splitDirs.some((d) => d.split === 'test');
    const tv = pct[0] + pct[1];
    const carvePct: [number, number, number] = tv > 0 ? [(100 * pct[0]) / tv, (100 * pct[1]) / tv, 0] : [100, 0, 0];
    for (const cls of classes) {
      const g = byClass.get(cls)!;
      if (hasVal) {
        push(train, sortFiles(g.train), cls);
        push(val, sortFiles(g.val), cls);
      } else {
        const [tr, va] = splitClass(g.train, cls, carvePct, seed, rel);
        push(train, tr, cls);
        push(val, va, cls);
      }
      push(test, sortFiles(g.test), cls);
      if (g.train.length === 0) {
        const where = [g.val.length > 0 ? 'val' : '', g.test.length > 0 ? 'test' : ''].filter(Boolean).join(' and ');
        warnings.push(`class '${cls}' has no images in train/ (only in ${where}); the model cannot learn it`);
      } else if (g.train.length < 2) {
        warnings.push(`class '${cls}' has only ${plural(g.train.length, 'image')} in train/; a class needs at least 2`);
      }
    }
    if (!hasVal) {
      notes.push(
        pct[1] > 0
          ? `no val/ folder: ${fmtPct(carvePct[1])}% of each class in train/ was set aside for validation (the val share of ${pct.map(fmtPct).join('/')} relative to train + val), seed ${seed}`
          : 'no val/ folder and a val percentage of 0: the validation split is empty',
      );
    }
    if (!hasTest) notes.push('no test/ folder: the test split is empty');
  }

  return { root, classes, train, val, test, skipped, warnings, layout, notes, external: real.external };
}
