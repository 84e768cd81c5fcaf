// 'inspect/thumbs': thumbnails for the Inspect exits grid, made with sharp and cached on disk.
//
// A thumbnail's file name is a hash of the image's absolute path, its size and modification
// time, the thumbnail size and format: an edited image gets a new thumbnail, an unchanged one is
// never made twice (the panel asks again after every reload and scroll). Files are written under
// a temporary name and renamed, so a reader never sees half a thumbnail, and two engines making
// the same one at once both end with a whole file.
//
// Decoding runs on libuv's thread pool (4 threads by default), so a few decodes in flight keep
// it busy; more would only queue there and hold more decoded images in memory.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sharpLib } from '../data/sharp';
import type { ThumbsParams, ThumbsResult } from './types';
import { imageInfo, MAX_INPUT_PIXELS } from '../data/image';
import { UserError } from '../tensor';
import { writeFileAtomicAsync } from '../io/atomic';

export const DEFAULT_THUMB_SIZE = 96;
export const THUMB_CONCURRENCY = 4;

/** The cache file name of a thumbnail: changes when the image file or the request changes. */
export function thumbName(
  absFile: string,
  st: { size: number; mtimeMs: number },
  size: number,
  format: 'webp' | 'png',
): string {
  const h = createHash('sha1').update(`${absFile}\0${st.size}\0${st.mtimeMs}\0${size}\0${format}`).digest('hex');
  return `${h.slice(0, 32)}-${size}.${format}`;
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();
}

async function makeOne(file: string, size: number, format: 'webp' | 'png', cacheDir: string): Promise<string> {
  const abs = path.resolve(file);
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(abs);
  } catch (e) {
    throw new Error(`cannot read file (${message(e)})`);
  }
  if (!st.isFile()) throw new Error(st.isDirectory() ? 'is a folder, not an image file' : 'not a regular file');
  const out = path.join(cacheDir, thumbName(abs, st, size, format));
  if (fs.existsSync(out)) return out;
  let buf: Buffer;
  try {
    // Same decoder settings as training (src/engine/data/image.ts): first frame, refuse
    // truncated data rather than show a half-grey picture the scorer would skip anyway.
    const src = sharpLib()(abs, { failOn: 'truncated', limitInputPixels: MAX_INPUT_PIXELS, pages: 1, page: 0 });
    const meta = await src.metadata();
    const longest = Math.max(meta.autoOrient?.width ?? meta.width ?? 0, meta.autoOrient?.height ?? meta.height ?? 0);
    // Small images are scaled up too, so every cell of the grid shows its image at one size;
    // nearest neighbour keeps 16 px shapes and 28 px digits crisp instead of blurred.
    let img = src
      .rotate() // EXIF orientation: the thumbnail looks like the photo does in any viewer
      .resize(size, size, { fit: 'inside', kernel: longest && longest < size ? 'nearest' : 'lanczos3' });
    img = format === 'webp' ? img.webp({ quality: 80, effort: 2 }) : img.png({ compressionLevel: 6 });
    buf = await img.toBuffer();
  } catch (e) {
    // The training pipeline's header check words the common cases (not an image, HEIC, too
    // large) better than libvips does.
    try {
      await imageInfo(abs);
    } catch (why) {
      throw new Error((why as { reason?: string }).reason ?? message(why));
    }
    throw new Error(`cannot make a thumbnail (${message(e)})`);
  }
  await writeFileAtomicAsync(out, buf);
  return out;
}

export async function makeThumbs(p: ThumbsParams, concurrency = THUMB_CONCURRENCY): Promise<ThumbsResult> {
  if (!p || !Array.isArray(p.files) || p.files.some((f) => typeof f !== 'string'))
    throw new UserError('inspect/thumbs: files must be a list of image paths');
  if (typeof p.cacheDir !== 'string' || !p.cacheDir) throw new UserError('inspect/thumbs: cacheDir is required');
  const size = p.size ?? DEFAULT_THUMB_SIZE;
  if (!Number.isInteger(size) || size < 8 || size > 1024)
    throw new UserError(`inspect/thumbs: size must be an integer from 8 to 1024, got ${String(p.size)}`);
  const format = p.format ?? 'webp';
  if (format !== 'webp' && format !== 'png')
    throw new UserError(`inspect/thumbs: format must be 'webp' or 'png', got '${String(format)}'`);
  const cacheDir = path.resolve(p.cacheDir);
  try {
    await fs.promises.mkdir(cacheDir, { recursive: true });
  } catch (e) {
    throw new UserError(`inspect/thumbs: cannot create the thumbnail folder ${cacheDir} (${message(e)})`);
  }
  const thumbs: (string | null)[] = new Array<string | null>(p.files.length).fill(null);
  const reasons: (string | null)[] = new Array<string | null>(p.files.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < p.files.length) {
      const i = next++;
      try {
        thumbs[i] = await makeOne(p.files[i], size, format, cacheDir);
      } catch (e) {
        reasons[i] = message(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, p.files.length) }, worker));
  const skipped: { file: string; reason: string }[] = [];
  reasons.forEach((r, i) => r !== null && skipped.push({ file: p.files[i], reason: r }));
  return { thumbs, skipped };
}
