// Which folders are datasets the engine can fine-tune on, found without decoding anything: the
// extension's folder picker and `met.createConfig` list them. The rules are the engine's
// (engine/data/folder.ts scanDataset):
//   split-folders  a train/ folder (with val/, valid/, validation/, test/ beside it or not)
//                  holding at least 2 class folders with images
//   class-folders  at least 2 sub-folders with images
// Images count at any depth inside a class folder (the engine's listImageFiles walks them all),
// by the project's one image-extension list; names starting with '.' are skipped, and symbolic
// links followed, as the engine does. A val/ or test/ holding class folders without train/ is no
// dataset (the engine refuses it). Cheaper than a scan: headers are not read, so a folder
// offered here can still fail the scan on broken files, which the engine then names.
//
// Pure: no runtime path to sharp or onnxruntime-node (the extension host runs it).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasImageExtension, SPLIT_DIR_NAMES } from '../engine/data/files';

export interface DatasetCandidate {
  dir: string;
  /** Class folder names (of train/ in the split-folders layout), sorted. */
  classes: string[];
  /** Images in the class folders (of train/ in the split-folders layout). */
  images: number;
  layout: 'class-folders' | 'split-folders';
  /** No class folder holds images directly, only in sub-folders: the engine trains on it, but the
   *  folder may as well be a parent of datasets (a workspace holding two), so it is listed last. */
  nested: boolean;
}

/** Folders never searched for datasets (their own sub-folders are not datasets either). */
const SKIP_DIRS = new Set(['node_modules', 'out', 'dist', '__pycache__']);

interface Listing {
  dirs: string[];
  files: string[];
}

async function list(dir: string): Promise<Listing> {
  const out: Listing = { dirs: [], files: [] };
  let ents: fs.Dirent[];
  try {
    ents = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of ents) {
    if (e.name.startsWith('.')) continue;
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const st = await fs.promises.stat(path.join(dir, e.name)).catch(() => null);
      isDir = st?.isDirectory() ?? false;
      isFile = st?.isFile() ?? false;
    }
    if (isDir) out.dirs.push(e.name);
    else if (isFile) out.files.push(e.name);
  }
  out.dirs.sort();
  return out;
}

/** Image files in dir at any depth (stops counting at `cap`), and how many directly in it. */
async function countImages(
  dir: string,
  cap: number,
  seen = new Set<string>(),
): Promise<{ images: number; direct: number }> {
  const real = await fs.promises.realpath(dir).catch(() => dir);
  if (seen.has(real)) return { images: 0, direct: 0 }; // a link cycle
  seen.add(real);
  const l = await list(dir);
  const direct = l.files.filter(hasImageExtension).length;
  let n = direct;
  for (const d of l.dirs) {
    if (n >= cap) break;
    n += (await countImages(path.join(dir, d), cap - n, seen)).images;
  }
  return { images: n, direct };
}

/** Class folders of `dir` (sub-folders with at least one image) and their images. */
async function classFolders(
  dir: string,
  dirs: string[],
): Promise<{ classes: string[]; images: number; nested: boolean }> {
  const classes: string[] = [];
  let images = 0;
  let direct = 0;
  for (const d of dirs) {
    const n = await countImages(path.join(dir, d), 100_000);
    if (n.images > 0) {
      classes.push(d);
      images += n.images;
      direct += n.direct;
    }
  }
  return { classes, images, nested: direct === 0 };
}

/** `dir` as a dataset by the engine's rules, or undefined when the engine would not train on it. */
export async function detectDataset(dir: string): Promise<DatasetCandidate | undefined> {
  const top = await list(dir);
  const dirs = top.dirs.filter((d) => !SKIP_DIRS.has(d));
  const splits = dirs.filter((d) => SPLIT_DIR_NAMES.has(d));
  if (splits.includes('train')) {
    const train = path.join(dir, 'train');
    const { classes, images, nested } = await classFolders(train, (await list(train)).dirs);
    return classes.length >= 2 ? { dir, classes, images, layout: 'split-folders', nested } : undefined;
  }
  // val/ or test/ holding folders without train/: the engine refuses it (a split layout without train/).
  for (const s of splits) if ((await list(path.join(dir, s))).dirs.length) return undefined;
  const { classes, images, nested } = await classFolders(dir, dirs);
  return classes.length >= 2 ? { dir, classes, images, layout: 'class-folders', nested } : undefined;
}

/**
 * Datasets under `roots`, breadth first, a few levels deep (bounded: big workspaces). A dataset's
 * class folders are not searched further, unless it is nested (see DatasetCandidate.nested): then
 * the datasets inside it come first, and it after them.
 */
export async function findDatasets(roots: string[], maxDepth = 4, maxDirs = 3000): Promise<DatasetCandidate[]> {
  const found: DatasetCandidate[] = [];
  const nested: DatasetCandidate[] = [];
  let queue = roots.map((r) => ({ dir: r, depth: 0 }));
  let visited = 0;
  while (queue.length && visited < maxDirs) {
    const next: typeof queue = [];
    for (const { dir, depth } of queue) {
      if (++visited > maxDirs) break;
      const c = await detectDataset(dir);
      if (c && !c.nested) {
        found.push(c);
        continue; // its class folders are not datasets of their own
      }
      if (c) nested.push(c);
      if (depth >= maxDepth) continue;
      for (const name of (await list(dir)).dirs)
        if (!SKIP_DIRS.has(name)) next.push({ dir: path.join(dir, name), depth: depth + 1 });
    }
    queue = next;
  }
  return [...found, ...nested.reverse()]; // deeper nested datasets first
}
