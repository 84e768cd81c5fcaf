// Finding image files: expands folders recursively into a sorted, deterministic list; the image
// extensions and split-folder names of the whole project. Kept apart from image.ts so listing
// never needs to load sharp's native binary: pure, the extension host imports it too.

import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../tensor';

/**
 * Extensions (lower case, no dot) picked up when a folder is expanded. These are the raster
 * formats the prebuilt sharp binaries decode. BMP is absent because libvips cannot read it;
 * SVG/PDF/HEIC are absent on purpose (vector or not in the prebuilt binaries).
 */
export const IMAGE_EXTENSIONS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'];

const EXT_SET = new Set(IMAGE_EXTENSIONS);

/**
 * Folder names that mark a split-folders dataset (root/{train,val,test}/<class>/...), and the
 * split each one holds: `valid/` and `validation/` are val/ (Roboflow and Kaggle exports). A Map,
 * not an object literal: `name in {...}` would also match class folders called 'constructor'.
 * The dataset scanner (folder.ts) and the extension's folder detection (app/dataset.ts) both
 * read it, so the editor offers exactly the folders the engine trains on.
 */
export const SPLIT_DIR_NAMES: ReadonlyMap<string, 'train' | 'val' | 'test'> = new Map([
  ['train', 'train'],
  ['val', 'val'],
  ['valid', 'val'],
  ['validation', 'val'],
  ['test', 'test'],
]);

/** True when the file name has one of IMAGE_EXTENSIONS, ignoring case (`.JPG` counts). */
export function hasImageExtension(file: string): boolean {
  const ext = path.extname(file).slice(1).toLowerCase();
  return EXT_SET.has(ext);
}

export interface ListedFiles {
  files: string[];
  /** Files seen inside folders that were not taken, with why (unsupported extension, broken link...). */
  skipped: { file: string; reason: string }[];
}

/**
 * Code-unit order rather than localeCompare: the result must not depend on the ICU locale of
 * the machine, otherwise the same dataset would be ordered (and split) differently elsewhere.
 */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Expands `paths` into image files. Folders are walked recursively in sorted order (each
 * folder's entries by name, depth first) so the same tree always gives the same list; names
 * starting with '.' (.DS_Store, .git, ...) are skipped silently. A path given directly as a
 * file is kept even with an unusual extension: the user asked for it, and decoding reports a
 * clear error if it is not an image. Paths that do not exist throw a UserError naming them.
 * Duplicates (the same file reached twice) are kept once, at their first position.
 */
export async function listImageFiles(paths: string[]): Promise<ListedFiles> {
  const files: string[] = [];
  const skipped: { file: string; reason: string }[] = [];
  const seenFiles = new Set<string>();
  // Real paths of folders already walked: guards against symlink cycles and double walks.
  const seenDirs = new Set<string>();

  const addFile = (file: string): void => {
    const key = path.resolve(file);
    if (seenFiles.has(key)) return;
    seenFiles.add(key);
    files.push(file);
  };

  const walk = async (dir: string): Promise<void> => {
    let real: string;
    try {
      real = await fs.promises.realpath(dir);
    } catch (e) {
      skipped.push({ file: dir, reason: `cannot read folder (${errMessage(e)})` });
      return;
    }
    if (seenDirs.has(real)) return;
    seenDirs.add(real);
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch (e) {
      skipped.push({ file: dir, reason: `cannot read folder (${errMessage(e)})` });
      return;
    }
    entries.sort((a, b) => byCodeUnit(a.name, b.name));
    for (const ent of entries) {
      if (ent.name.startsWith('.')) continue;
      const full = path.join(dir, ent.name);
      let isDir = ent.isDirectory();
      let isFile = ent.isFile();
      if (ent.isSymbolicLink()) {
        // Follow links (datasets are often assembled from links); stat() resolves them.
        try {
          const st = await fs.promises.stat(full);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          skipped.push({ file: full, reason: 'broken symbolic link' });
          continue;
        }
      }
      if (isDir) {
        await walk(full);
      } else if (isFile) {
        if (hasImageExtension(ent.name)) addFile(full);
        else skipped.push({ file: full, reason: `not an image file extension (${path.extname(ent.name) || 'none'})` });
      } else {
        skipped.push({ file: full, reason: 'not a regular file' });
      }
    }
  };

  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch (e) {
      if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') throw new UserError(`path not found: ${p}`);
      throw new UserError(`cannot access ${p}: ${errMessage(e)}`);
    }
    if (st.isDirectory()) await walk(p);
    else if (st.isFile()) addFile(p);
    else skipped.push({ file: p, reason: 'not a regular file' });
  }
  return { files, skipped };
}
