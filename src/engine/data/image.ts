// Image decoding and preprocessing into normalised float32 [C, H, W] tensors, with sharp
// (libvips). The goal is to match the PIL/torchvision/timm eval pipeline a ViT checkpoint was
// trained with, while never crashing a whole run on one bad file.
//
// Pipeline per file:
//   read bytes -> header check (format, size limit) -> sharp: EXIF orientation, alpha
//   dropped, 8-bit sRGB (plus a pre-shrink for very large images) -> JS: channel conversion,
//   Pillow-exact resize + centre crop (resample.ts), normalisation.
// Except for the pre-shrink of large photos this gives the same pixels as PIL + torchvision
// / timm (checked against Pillow 9.4: libjpeg decodes JPEGs bit-identically to Pillow's, and
// resample.ts reproduces Pillow's resize).

import * as fs from 'fs';
import type sharp from 'sharp';
import { SharpUnavailable, sharpLib } from './sharp';
import { UserError } from '../tensor';
import { type Filter, type Image8, resizePil, type Window } from './resample';

export interface Preprocess {
  /** Output side in pixels (square). */
  imageSize: number;
  channels: 1 | 3;
  /** Per-channel mean/std applied to [0,1] pixels; length 1 applies to every channel. */
  mean: number[];
  std: number[];
  /**
   * 'direct': resize straight to imageSize x imageSize, aspect not kept (VTAB style).
   * 'resize-center-crop': shorter side to floor(imageSize / cropPct), then centre crop (timm eval).
   */
  resize: 'direct' | 'resize-center-crop';
  /** Fraction of the resized image kept by the centre crop, in (0, 1]; default 0.875 like timm. */
  cropPct?: number;
  /** Default 'bilinear'. */
  interpolation?: 'bilinear' | 'bicubic';
}

export const DEFAULT_CROP_PCT = 0.875;

/**
 * Decompression-bomb guard, checked from the header before any pixel is decoded. It is
 * libvips' 0x3FFF * 0x3FFF (~268 MP), which sharp also uses by default: large enough for any
 * camera photo (a 200 MP phone shot is ~16320 x 12240), small enough to refuse a tiny file
 * that claims 100000 x 100000 pixels.
 */
export const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

/** Formats (as sharp's metadata names them) accepted for decoding. AVIF reports as 'heif'. */
const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

/** A file that could not be read or decoded. The message names the file and says why. */
export class ImageError extends UserError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'ImageError';
  }
}

/**
 * Interpolation -> sharp kernel, used only for the pre-shrink of very large images. 'linear'
 * is libvips' triangle filter and 'cubic' its Catmull-Rom cubic, the same kernels as PIL's
 * BILINEAR and BICUBIC (a = -0.5); libvips also widens them by the downscale factor
 * (antialiasing) like PIL, so the pre-shrunk image is close to what PIL would produce.
 */
const KERNELS = { bilinear: 'linear', bicubic: 'cubic' } as const;

/**
 * Large photos (over PRESHRINK_MIN_PIXELS and at least PRESHRINK_FACTOR times the resize
 * target in both directions) are first shrunk by libvips to PRESHRINK_GAP x the target. That
 * lets JPEG/WebP decode at reduced size (shrink-on-load) and keeps the single-threaded JS
 * resize small: a 12 MP JPEG takes ~70 ms instead of ~500 ms. The final step is still
 * Pillow's resampler; measured against the exact path on a 4000x3000 JPEG -> 298x224, a gap
 * of 3 differs by at most 2 grey levels (mean 0.17), a gap of 2 by up to 8. Typical dataset
 * images (ImageNet, CUB, Flowers: well under 2 MP) never take this path, so they stay
 * bit-exact with PIL.
 */
const PRESHRINK_MIN_PIXELS = 2_000_000;
const PRESHRINK_FACTOR = 4;
const PRESHRINK_GAP = 3;

/** Throws a UserError describing the first invalid setting of `p`. */
export function validatePreprocess(p: Preprocess): void {
  if (!Number.isInteger(p.imageSize) || p.imageSize < 1 || p.imageSize > 8192) {
    throw new UserError(`image size must be an integer between 1 and 8192, got ${p.imageSize}`);
  }
  if (p.channels !== 1 && p.channels !== 3) throw new UserError(`channels must be 1 or 3, got ${String(p.channels)}`);
  for (const [name, v] of [
    ['mean', p.mean],
    ['std', p.std],
  ] as const) {
    if (!Array.isArray(v) || (v.length !== 1 && v.length !== p.channels)) {
      throw new UserError(`${name} must have 1 or ${p.channels} values, got ${Array.isArray(v) ? v.length : typeof v}`);
    }
    if (v.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
      throw new UserError(`${name} values must be finite numbers`);
  }
  if (p.std.some((x) => x === 0)) throw new UserError('std values must be non-zero');
  if (p.resize !== 'direct' && p.resize !== 'resize-center-crop') {
    throw new UserError(`resize must be 'direct' or 'resize-center-crop', got '${String(p.resize)}'`);
  }
  if (p.cropPct !== undefined && !(p.cropPct > 0 && p.cropPct <= 1)) {
    throw new UserError(`crop percentage must be in (0, 1], got ${p.cropPct}`);
  }
  if (p.interpolation !== undefined && p.interpolation !== 'bilinear' && p.interpolation !== 'bicubic') {
    throw new UserError(`interpolation must be 'bilinear' or 'bicubic', got '${String(p.interpolation)}'`);
  }
}

/** Python's round() (half to even), so the centre crop offset matches torchvision's CenterCrop. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

interface Geometry {
  /** Size after the resize step (equal to the source size when no resampling is needed). */
  width: number;
  height: number;
  /** Top-left corner of the imageSize x imageSize crop inside the resized image. */
  left: number;
  top: number;
}

/**
 * Where the source (already EXIF-rotated) w x h image goes. Follows timm's eval transform:
 * scale_size = floor(img_size / crop_pct), then torchvision Resize(int) which sets the shorter
 * side and truncates the longer one (int(size * long / short)), then CenterCrop.
 */
function geometry(w: number, h: number, p: Preprocess): Geometry {
  const s = p.imageSize;
  if (p.resize === 'direct') return { width: s, height: s, left: 0, top: 0 };
  const scale = Math.floor(s / (p.cropPct ?? DEFAULT_CROP_PCT));
  let width: number;
  let height: number;
  if (w <= h) {
    width = scale;
    height = Math.trunc((scale * h) / w);
  } else {
    height = scale;
    width = Math.trunc((scale * w) / h);
  }
  return { width, height, left: roundHalfEven((width - s) / 2), top: roundHalfEven((height - s) / 2) };
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** libvips messages can span lines and end with newlines; keep them on one line. */
function cleanMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/\s+/g, ' ').trim();
}

/** Words that lines of libvips errors from each format's loader contain. */
const LOADER_WORDS: Record<string, RegExp> = {
  jpeg: /jpeg|jpg/i,
  png: /png/i,
  webp: /webp/i,
  gif: /gif/i,
  tiff: /tiff/i,
  heif: /heif|avif/i,
};

/**
 * The lines of a decode error that come from this file's loader. libvips keeps one error
 * buffer for the whole process, so when several decodes fail at once (loadBatch) a message
 * can carry another file's line, or lose its own ('Unknown error'); those are dropped.
 */
function decoderDetail(e: unknown, format: string): string {
  const m = e instanceof Error ? e.message : String(e);
  const words = LOADER_WORDS[format];
  const lines = m
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && words !== undefined && words.test(l));
  return lines.join('; ');
}

/**
 * sharp's message for a header it cannot read. For a corrupt header sharp appends libvips'
 * process-wide error buffer, which holds this file's line, another file's, or nothing, depending
 * on what else decoded at that moment: the same broken JPEG scored twice in one engine gave
 * "...corrupt header: VipsJpeg: premature end of JPEG image" once and "...corrupt header:" once.
 * That tail is dropped, so a file's reason does not depend on its neighbours (as decoderDetail
 * drops other loaders' lines).
 */
function headerMessage(e: unknown): string {
  return cleanMessage(e).replace(/^(Input (?:buffer|file) has corrupt header):.*$/, '$1');
}

/**
 * The most bytes one image file may hold before it is refused unread. A file at the pixel limit
 * (MAX_INPUT_PIXELS, 16383x16383) as an 8-bit RGB PNG that does not compress at all is ~805 MB;
 * datasets of such files are not what this tool trains on, while a multi-GB file that only
 * claims to be an image (a disk image named .jpg) would otherwise be read whole into memory.
 */
export const MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024;

function tooLargeFile(file: string, size: number): ImageError {
  return new ImageError(
    file,
    `file too large (${size} bytes; an image file may hold at most ${MAX_IMAGE_FILE_BYTES} bytes = 256 MiB)`,
  );
}

async function readBytes(file: string): Promise<Buffer> {
  // Reading ourselves (rather than handing sharp the path) gives clear I/O errors, detects
  // empty files, and sidesteps libvips' per-path cache returning stale pixels for a file that
  // changed on disk. The size is checked (stat) before the read, so a huge file is refused
  // without being read; a file that grows between stat and read is cut at the limit + 1 byte.
  let buf: Buffer;
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (e) {
    throw ioError(file, e);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new ImageError(file, 'is a folder, not an image file');
    if (st.size > MAX_IMAGE_FILE_BYTES) throw tooLargeFile(file, st.size);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // Whole file in one read as a rule; 64 KiB more at a time if it grew after the stat.
      const chunk = Buffer.alloc(Math.min(Math.max(st.size - total, 64 * 1024), MAX_IMAGE_FILE_BYTES + 1 - total));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > MAX_IMAGE_FILE_BYTES) throw tooLargeFile(file, total);
    }
    buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
  } catch (e) {
    throw e instanceof ImageError ? e : ioError(file, e);
  } finally {
    await fh.close();
  }
  if (buf.length === 0) throw new ImageError(file, 'empty file (0 bytes)');
  return buf;
}

function ioError(file: string, e: unknown): ImageError {
  const code = errCode(e);
  if (code === 'ENOENT' || code === 'ENOTDIR') return new ImageError(file, 'file not found');
  if (code === 'EISDIR') return new ImageError(file, 'is a folder, not an image file');
  if (code === 'EACCES' || code === 'EPERM') return new ImageError(file, 'permission denied');
  return new ImageError(file, `cannot read file (${cleanMessage(e)})`);
}

/**
 * Per-channel lookup table of normalised values for the 256 pixel levels: entry v of table c
 * is float32((v / 255 - mean[c]) / std[c]). Every path that normalises uses these tables, so
 * a batch assembled later from cached 8-bit pixels has exactly loadImageTensor's values.
 */
export function normalizationTables(p: Preprocess): Float32Array[] {
  const tables: Float32Array[] = [];
  for (let c = 0; c < p.channels; c++) {
    const m = p.mean.length === 1 ? p.mean[0] : p.mean[c];
    const sd = p.std.length === 1 ? p.std[0] : p.std[c];
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v / 255 - m) / sd;
    tables.push(t);
  }
  return tables;
}

export interface ImageInfo {
  /** sharp's format name: jpeg, png, webp, gif, tiff, heif (AVIF). */
  format: string;
  /** Size after EXIF orientation, i.e. as displayed. */
  width: number;
  height: number;
  /** Frames / pages in the file; only the first is used. */
  pages: number;
}

/** Reads the header: format and displayed size (after EXIF rotation), checked against limits. */
async function probe(file: string, buf: Buffer, opts: sharp.SharpOptions): Promise<ImageInfo> {
  let meta: sharp.Metadata;
  // Outside the try: sharp that cannot load is not a property of this file (a UserError for the run).
  const lib = sharpLib();
  try {
    // Header only, so the pixel limit is lifted here and checked below with a clearer message.
    meta = await lib(buf, { ...opts, limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageError(file, `not an image (unsupported or corrupt file: ${headerMessage(e)})`);
  }
  if (!ACCEPTED_FORMATS.has(meta.format)) {
    throw new ImageError(file, `unsupported image format '${meta.format}' (use JPEG, PNG, WebP, GIF, TIFF or AVIF)`);
  }
  if (meta.format === 'heif' && meta.compression !== 'av1') {
    // The prebuilt sharp binaries decode AVIF only; HEVC (iPhone .heic) is patent-encumbered.
    throw new ImageError(file, 'HEIC images are not supported (convert them to JPEG or PNG)');
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0 && height > 0)) throw new ImageError(file, 'not an image (no pixel dimensions)');
  if (width * height > MAX_INPUT_PIXELS) {
    throw new ImageError(file, `image too large (${width}x${height} pixels; the limit is ${MAX_INPUT_PIXELS} pixels)`);
  }
  return { format: meta.format, width, height, pages: meta.pages ?? 1 };
}

/**
 * failOn 'truncated': abort on truncated data (libvips would otherwise return a partly grey
 * image), but tolerate recoverable warnings such as extraneous bytes, which PIL also loads.
 * pages 1 = first frame of animated GIF/WebP and first page of multi-page TIFF.
 */
const SHARP_OPTIONS: sharp.SharpOptions = {
  failOn: 'truncated',
  limitInputPixels: MAX_INPUT_PIXELS,
  pages: 1,
  page: 0,
};

/** Header information of an image file without decoding its pixels. Throws ImageError. */
export async function imageInfo(file: string): Promise<ImageInfo> {
  return probe(file, await readBytes(file), SHARP_OPTIONS);
}

/**
 * Bytes read by sniffImage before trying the header. Enough for the header of JPEG (EXIF
 * included), PNG and WebP files; GIF and TIFF headers can need the whole file (a TIFF's
 * directory may sit at its end), and then the whole file is read.
 */
const SNIFF_BYTES = 64 * 1024;

/**
 * Like imageInfo, but reads only the first 64 KiB when that is enough to parse the header
 * (JPEG, PNG, WebP), so checking every file of a large dataset stays cheap. Pixel data is not
 * decoded, so a file whose header is fine but whose data is truncated passes here and fails
 * at decode time. Throws ImageError (empty, unreadable, not an image, unsupported, too large).
 */
export async function sniffImage(file: string): Promise<ImageInfo> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (e) {
    throw ioError(file, e);
  }
  let head: Buffer;
  let size: number;
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new ImageError(file, 'is a folder, not an image file');
    size = st.size;
    if (size === 0) throw new ImageError(file, 'empty file (0 bytes)');
    if (size > MAX_IMAGE_FILE_BYTES) throw tooLargeFile(file, size);
    head = Buffer.alloc(Math.min(size, SNIFF_BYTES));
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    head = head.subarray(0, bytesRead);
  } catch (e) {
    throw e instanceof ImageError ? e : ioError(file, e);
  } finally {
    await fh.close();
  }
  if (size <= head.length) return probe(file, head, SHARP_OPTIONS);
  try {
    return await probe(file, head, SHARP_OPTIONS);
  } catch (e) {
    // Only 'cannot parse' is worth a second try with the whole file; format and size
    // refusals came from a header that was read completely.
    if (!(e instanceof ImageError) || !e.reason.startsWith('not an image')) throw e;
  }
  return probe(file, await readBytes(file), SHARP_OPTIONS);
}

/**
 * Reads and decodes `file` into interleaved 8-bit RGB after EXIF rotation. `target` gets the
 * displayed size and returns the size the caller will resize to; large photos are pre-shrunk
 * by libvips toward it (see PRESHRINK_*), otherwise the pixels are the file's own.
 */
async function decodeRgb8(
  file: string,
  target: (w: number, h: number) => { width: number; height: number },
  filter: Filter,
): Promise<Image8> {
  const buf = await readBytes(file);
  const { format, width: w0, height: h0 } = await probe(file, buf, SHARP_OPTIONS);
  const t = target(w0, h0);
  // .rotate() with no angle applies the EXIF orientation; sharp runs it before any resize.
  let img = sharpLib()(buf, SHARP_OPTIONS).rotate();
  if (w0 * h0 > PRESHRINK_MIN_PIXELS && w0 >= PRESHRINK_FACTOR * t.width && h0 >= PRESHRINK_FACTOR * t.height) {
    // fastShrinkOnLoad false: JPEG/WebP still shrink while decoding, but the last part of the
    // reduction goes through the kernel, avoiding DCT-scaling artefacts.
    img = img.resize(PRESHRINK_GAP * t.width, PRESHRINK_GAP * t.height, {
      fit: 'fill',
      kernel: KERNELS[filter],
      fastShrinkOnLoad: false,
    });
  }
  // keepIccProfile: do not convert through an embedded ICC profile (e.g. Display P3 photos)
  // but use the stored values, as PIL does, so pixels match the Python pipelines. CMYK is
  // still converted to RGB (through libvips' default CMYK profile; PIL's naive formula differs).
  // removeAlpha: drop alpha and keep the colour underneath, like PIL's convert('RGB').
  // toColourspace('srgb'): 8-bit RGB whatever the source (16-bit is scaled by >> 8, gray is
  // replicated, palette expanded), so the JS side sees one layout only.
  img = img.keepIccProfile().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' });
  let data: Buffer;
  let info: sharp.OutputInfo;
  try {
    ({ data, info } = await img.toBuffer({ resolveWithObject: true }));
  } catch (e) {
    const detail = decoderDetail(e, format);
    throw new ImageError(
      file,
      detail ? `corrupt or truncated image data (${detail})` : 'corrupt or truncated image data',
    );
  }
  if (info.channels !== 3 || info.width < 1 || info.height < 1) {
    throw new ImageError(file, `unexpected decoded layout ${info.width}x${info.height}x${info.channels}`);
  }
  return { data, width: info.width, height: info.height, channels: 3 };
}

/** The last step of preprocessing: resize to width x height with `filter`, keep `window`. */
export interface ResizePlan {
  width: number;
  height: number;
  window: Window;
  filter: Filter;
}

/** A decoded image (already in the output channel count) and the resize that finishes it. */
export interface DecodedImage {
  image: Image8;
  plan: ResizePlan;
}

/**
 * Everything loadImageTensor does except the final Pillow resize and the normalisation, so a
 * cache can keep whichever of `image` (small sources) or `finishPreprocess(...)` (large ones)
 * is smaller and still produce loadImageTensor's exact pixels later. `p` is not validated.
 */
export async function decodeForPreprocess(file: string, p: Preprocess): Promise<DecodedImage> {
  const filter = p.interpolation ?? 'bilinear';
  let g: Geometry = { width: 0, height: 0, left: 0, top: 0 };
  const rgb = await decodeRgb8(file, (w, h) => (g = geometry(w, h, p)), filter);
  const s = p.imageSize;
  return {
    image: p.channels === 1 ? toLuma(rgb) : rgb,
    plan: { width: g.width, height: g.height, window: { left: g.left, top: g.top, width: s, height: s }, filter },
  };
}

/**
 * Resize + centre crop in one go: the [S, S, C] 8-bit pixels loadImageTensor normalises. When
 * the size already matches, resizePil only copies the window: exact source pixels (MNIST
 * 28x28 stays bit-exact).
 */
export function finishPreprocess(d: DecodedImage): Image8 {
  return resizePil(d.image, d.plan.width, d.plan.height, d.plan.filter, d.plan.window);
}

/**
 * Decodes `file` (EXIF rotation, channel conversion as loadImageTensor) without cropping,
 * scaled down with Pillow's resampler when needed so the shorter side is at most `maxShort`
 * and the longer at most `maxLong` (aspect kept, sizes rounded). Used to cache sources for
 * random crops, which need the whole picture but not its full resolution.
 */
export async function loadSourceImage8(
  file: string,
  channels: 1 | 3,
  maxShort: number,
  maxLong: number,
  filter: Filter = 'bilinear',
): Promise<Image8> {
  let t = { width: 0, height: 0 };
  const rgb = await decodeRgb8(
    file,
    (w, h) => {
      const scale = Math.min(1, maxShort / Math.min(w, h), maxLong / Math.max(w, h));
      t =
        scale >= 1
          ? { width: w, height: h }
          : { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
      return t;
    },
    filter,
  );
  const src = channels === 1 ? toLuma(rgb) : rgb;
  return src.width === t.width && src.height === t.height ? src : resizePil(src, t.width, t.height, filter);
}

/**
 * Writes the [S, S, C] interleaved 8-bit `img` as normalised planar [C, S, S] floats into
 * out[offset ...] through `tables` (normalizationTables). hflip mirrors each row, which is
 * what PIL's transpose(FLIP_LEFT_RIGHT) of the same pixels gives.
 */
export function writeNormalized(
  img: Image8,
  tables: Float32Array[],
  out: Float32Array,
  offset: number,
  hflip = false,
): void {
  const { width: w, height: h, data: px } = img;
  const plane = w * h;
  if (img.channels !== tables.length)
    throw new Error(`writeNormalized: ${img.channels}-channel image, ${tables.length} tables`);
  if (!hflip) {
    if (img.channels === 3) {
      const [t0, t1, t2] = tables;
      for (let i = 0, j = 0; i < plane; i++, j += 3) {
        out[offset + i] = t0[px[j]];
        out[offset + plane + i] = t1[px[j + 1]];
        out[offset + 2 * plane + i] = t2[px[j + 2]];
      }
    } else {
      const t0 = tables[0];
      for (let i = 0; i < plane; i++) out[offset + i] = t0[px[i]];
    }
    return;
  }
  const C = img.channels;
  for (let c = 0; c < C; c++) {
    const t = tables[c];
    const base = offset + c * plane;
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let x = 0; x < w; x++) out[base + row + x] = t[px[(row + (w - 1 - x)) * C + c]];
    }
  }
}

/**
 * Decodes `file` and writes its normalised [C, S, S] pixels into out[offset ...]. Throws
 * ImageError for anything wrong with the file.
 */
async function decodeInto(
  file: string,
  p: Preprocess,
  tables: Float32Array[],
  out: Float32Array,
  offset: number,
): Promise<void> {
  writeNormalized(finishPreprocess(await decodeForPreprocess(file, p)), tables, out, offset);
}

/**
 * RGB -> L with the ITU-R 601-2 luma in Pillow's fixed point (convert('L')):
 * L = R*299/1000 + G*587/1000 + B*114/1000, rounded. Done here rather than with libvips'
 * grayscale, which works in linear light and gives different values; done before resizing,
 * like convert('L') followed by a transform. Grey sources (R = G = B) map to themselves.
 */
function toLuma(src: Image8): Image8 {
  const n = src.width * src.height;
  const d = src.data;
  const out = new Uint8Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 3)
    out[i] = (d[j] * 19595 + d[j + 1] * 38470 + d[j + 2] * 7471 + 0x8000) >> 16;
  return { data: out, width: src.width, height: src.height, channels: 1 };
}

/**
 * Loads one image as a normalised float32 [C, H, W] array (C = p.channels, H = W =
 * p.imageSize), values (pixel / 255 - mean[c]) / std[c]. Throws ImageError when the file
 * cannot be decoded and UserError when `p` is invalid.
 */
export async function loadImageTensor(file: string, p: Preprocess): Promise<Float32Array> {
  validatePreprocess(p);
  const out = new Float32Array(p.channels * p.imageSize * p.imageSize);
  await decodeInto(file, p, normalizationTables(p), out, 0);
  return out;
}

export interface LoadedBatch {
  /** [N, C, H, W] with N = ok.length, in the order of `ok`. */
  data: Float32Array;
  /** Files decoded, in input order. */
  ok: string[];
  /** Files that failed, in input order, with a plain reason (the message without the file name). */
  failed: { file: string; reason: string }[];
}

/**
 * Decodes `files` with up to `concurrency` decodes in flight (each runs on libuv's thread
 * pool, so more than UV_THREADPOOL_SIZE (default 4) buys little). A bad file never stops the
 * batch: it is listed in `failed` and left out of `data`.
 */
export async function loadBatch(files: string[], p: Preprocess, concurrency = 4): Promise<LoadedBatch> {
  validatePreprocess(p);
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new UserError(`concurrency must be a positive integer, got ${concurrency}`);
  const per = p.channels * p.imageSize * p.imageSize;
  const tables = normalizationTables(p);
  const buf = new Float32Array(files.length * per);
  const errors: (string | null)[] = new Array<string | null>(files.length).fill(null);

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      try {
        await decodeInto(files[i], p, tables, buf, i * per);
      } catch (e) {
        if (e instanceof SharpUnavailable) throw e; // no file can be decoded: say so once
        // Anything, not only ImageError: one odd file must not abort the whole batch.
        errors[i] = e instanceof ImageError ? e.reason : cleanMessage(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, () => worker()));

  const ok: string[] = [];
  const failed: { file: string; reason: string }[] = [];
  for (let i = 0; i < files.length; i++) {
    const reason = errors[i];
    if (reason === null) {
      // Compact in place: slot i moves down to slot ok.length (never forward, so no overlap issue).
      if (ok.length !== i) buf.copyWithin(ok.length * per, i * per, (i + 1) * per);
      ok.push(files[i]);
    } else {
      failed.push({ file: files[i], reason });
    }
  }
  // Copy only when something failed, so the result owns a buffer of exactly N*C*H*W floats.
  const data = failed.length === 0 ? buf : buf.slice(0, ok.length * per);
  return { data, ok, failed };
}
