// Minimal read-only zip archive reader for the two zip-based checkpoint formats:
// PyTorch's torch.save (stored entries, data aligned to 64 bytes through padding in the local
// headers' extra fields, zip64 for files over 4 GB) and numpy's .npz (stored or deflated).
//
// We trust the central directory (the list at the end of the archive) for names, sizes and
// methods, and the local header only for where the entry's data starts, since the local extra
// field (PyTorch's alignment padding) differs from the central one. Every offset and size is
// checked against the buffer before use, and each entry's CRC-32 is verified on extraction.

import * as zlib from 'zlib';
import { UserError } from '../tensor';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const ZIP64_EXTRA_ID = 0x0001;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; others are refused on read. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

/** True when the bytes start like a zip archive (a local file header, or the end record of an empty archive). */
export function looksLikeZip(buf: Uint8Array): boolean {
  if (buf.length < 4) return false;
  const sig = buf[0] | (buf[1] << 8) | (buf[2] << 16) | (buf[3] << 24);
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

/**
 * The most bytes one archive may inflate to, over all its entries, per byte of the archive.
 * Deflate can reach ~1032:1, so a declared size alone lets a 1 MB file claim 1 GiB; weights
 * compress ~1.1:1, and a real model's all-zero arrays (fresh biases, a zeroed head) are a small
 * share of it. Beyond it the read fails by name instead of allocating.
 */
export const MAX_INFLATE_RATIO = 64;
/**
 * Plus this many bytes whatever the archive's size: a small .npz of one all-zero array
 * compresses ~1000:1, and refusing a 3 KB file that holds a 3 MB zero head would be wrong.
 * It is a constant, so the bound stays linear in the file: 64 x size + 4 MiB.
 */
export const INFLATE_ALLOWANCE_BYTES = 4 * 1024 * 1024;

export interface ZipReadOptions {
  /**
   * The most bytes the caller can use from this entry (a torch storage's numel x itemsize). A
   * deflated entry that declares more is refused before inflating; a stored one is a view, so
   * it costs nothing and is returned whole.
   */
  maxBytes?: number;
}

export class ZipArchive {
  readonly entries: ZipEntry[];
  private readonly byName = new Map<string, ZipEntry>();
  /** Bytes inflated so far; with MAX_INFLATE_RATIO bounds the memory and time of all reads. */
  private inflated = 0;

  /** `name` (usually the path) prefixes every error message. */
  constructor(
    private readonly buf: Buffer,
    readonly name: string,
  ) {
    this.entries = this.readCentralDirectory();
    for (const e of this.entries) if (!this.byName.has(e.name)) this.byName.set(e.name, e);
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** Returns the uncompressed bytes of an entry (a view into the archive for stored entries). */
  read(entryOrName: ZipEntry | string, opts: ZipReadOptions = {}): Buffer {
    const e = typeof entryOrName === 'string' ? this.byName.get(entryOrName) : entryOrName;
    if (!e) throw this.error(`zip entry '${String(entryOrName)}' not found`);
    if (e.flags & 1) throw this.error(`zip entry '${e.name}' is encrypted`);
    const buf = this.buf;
    const lh = e.localHeaderOffset;
    if (lh + 30 > buf.length || buf.readUInt32LE(lh) !== SIG_LOCAL) {
      throw this.error(`zip entry '${e.name}': local header at offset ${lh} is missing (truncated or corrupt archive)`);
    }
    const start = lh + 30 + buf.readUInt16LE(lh + 26) + buf.readUInt16LE(lh + 28);
    const end = start + e.compressedSize;
    if (end > buf.length) {
      throw this.error(
        `zip entry '${e.name}': data [${start}, ${end}) runs past the end of the file (${buf.length} bytes; truncated?)`,
      );
    }
    const raw = buf.subarray(start, end);
    let out: Buffer;
    if (e.method === 0) {
      if (e.compressedSize !== e.uncompressedSize)
        throw this.error(`zip entry '${e.name}': stored entry with differing sizes`);
      out = raw;
    } else if (e.method === 8) {
      if (opts.maxBytes !== undefined && e.uncompressedSize > opts.maxBytes) {
        throw this.error(
          `zip entry '${e.name}' declares ${e.uncompressedSize} bytes, more than the ${opts.maxBytes} its reader needs; refusing to inflate it`,
        );
      }
      const budget = INFLATE_ALLOWANCE_BYTES + MAX_INFLATE_RATIO * buf.length - this.inflated;
      if (e.uncompressedSize > budget) throw this.inflateLimit(e);
      try {
        // maxOutputLength bounds memory if the recorded size lies (a "zip bomb").
        out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.uncompressedSize) });
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
          throw this.error(
            `zip entry '${e.name}': inflates past its declared ${e.uncompressedSize} bytes (corrupt or hostile archive)`,
          );
        }
        throw this.error(`zip entry '${e.name}': cannot inflate (${(err as Error).message})`);
      }
      this.inflated += out.length;
      if (out.length !== e.uncompressedSize) {
        throw this.error(
          `zip entry '${e.name}': inflated to ${out.length} bytes, directory says ${e.uncompressedSize}`,
        );
      }
    } else {
      throw this.error(
        `zip entry '${e.name}' uses compression method ${e.method}; only stored (0) and deflate (8) are supported`,
      );
    }
    const crc = crc32(out);
    if (crc !== e.crc32) throw this.error(`zip entry '${e.name}': CRC-32 mismatch (corrupt archive)`);
    return out;
  }

  private inflateLimit(e: ZipEntry): UserError {
    return this.error(
      `zip entry '${e.name}' declares ${e.uncompressedSize} bytes; with the ${this.inflated} already inflated that exceeds ` +
        `${MAX_INFLATE_RATIO} x the archive's ${this.buf.length} bytes + 4 MiB (the limit for compressed entries; a zip bomb?)`,
    );
  }

  private error(msg: string): UserError {
    return new UserError(`${this.name}: ${msg}`);
  }

  /** Finds the end-of-central-directory record: the last 22..65557 bytes, scanning backwards past a comment. */
  private findEocd(): number {
    const buf = this.buf;
    if (buf.length < EOCD_SIZE) throw this.error(`not a zip archive, or truncated: ${buf.length} bytes`);
    const lowest = Math.max(0, buf.length - EOCD_SIZE - 0xffff);
    for (let p = buf.length - EOCD_SIZE; p >= lowest; p--) {
      if (buf.readUInt32LE(p) === SIG_EOCD && p + EOCD_SIZE + buf.readUInt16LE(p + 20) <= buf.length) return p;
    }
    throw this.error('not a zip archive, or truncated: end-of-central-directory record not found');
  }

  private readCentralDirectory(): ZipEntry[] {
    const buf = this.buf;
    const eocd = this.findEocd();
    let count = buf.readUInt16LE(eocd + 10);
    let cdSize = buf.readUInt32LE(eocd + 12);
    let cdOffset = buf.readUInt32LE(eocd + 16);

    // Zip64: the 32/16-bit fields saturate and the real values live in the zip64 EOCD record,
    // found through the locator that sits just before the classic EOCD.
    const loc = eocd - 20;
    if (loc >= 0 && buf.readUInt32LE(loc) === SIG_ZIP64_LOCATOR) {
      const z64 = this.safeNumber(buf.readBigUInt64LE(loc + 8), 'zip64 end-of-directory offset');
      if (z64 + 56 > buf.length || buf.readUInt32LE(z64) !== SIG_ZIP64_EOCD)
        throw this.error('corrupt zip64 end-of-central-directory record');
      count = this.safeNumber(buf.readBigUInt64LE(z64 + 32), 'zip64 entry count');
      cdSize = this.safeNumber(buf.readBigUInt64LE(z64 + 40), 'zip64 directory size');
      cdOffset = this.safeNumber(buf.readBigUInt64LE(z64 + 48), 'zip64 directory offset');
    }
    if (cdOffset + cdSize > buf.length) {
      throw this.error(
        `zip central directory [${cdOffset}, ${cdOffset + cdSize}) lies beyond the end of the file (${buf.length} bytes; truncated?)`,
      );
    }

    const entries: ZipEntry[] = [];
    let p = cdOffset;
    for (let i = 0; i < count; i++) {
      if (p + 46 > buf.length || buf.readUInt32LE(p) !== SIG_CENTRAL)
        throw this.error(`corrupt zip central directory (entry ${i})`);
      const flags = buf.readUInt16LE(p + 8);
      const method = buf.readUInt16LE(p + 10);
      const crc = buf.readUInt32LE(p + 16);
      let compressedSize = buf.readUInt32LE(p + 20);
      let uncompressedSize = buf.readUInt32LE(p + 24);
      const nameLen = buf.readUInt16LE(p + 28);
      const extraLen = buf.readUInt16LE(p + 30);
      const commentLen = buf.readUInt16LE(p + 32);
      let localHeaderOffset = buf.readUInt32LE(p + 42);
      const nameEnd = p + 46 + nameLen;
      if (nameEnd + extraLen + commentLen > buf.length) throw this.error(`corrupt zip central directory (entry ${i})`);
      // Bit 11: the name is UTF-8; otherwise it is CP437, of which we only get ASCII right (all the names we look for are ASCII).
      const name = buf.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, nameEnd);

      // The zip64 extra field holds, in this order, only those of the three values that saturated.
      let x = nameEnd;
      const extraEnd = nameEnd + extraLen;
      while (x + 4 <= extraEnd) {
        const id = buf.readUInt16LE(x);
        const size = buf.readUInt16LE(x + 2);
        if (id === ZIP64_EXTRA_ID) {
          let q = x + 4;
          const next = (what: string): number => {
            if (q + 8 > x + 4 + size) throw this.error(`zip entry '${name}': short zip64 extra field`);
            const v = this.safeNumber(buf.readBigUInt64LE(q), what);
            q += 8;
            return v;
          };
          if (uncompressedSize === 0xffffffff) uncompressedSize = next('size');
          if (compressedSize === 0xffffffff) compressedSize = next('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = next('offset');
        }
        x += 4 + size;
      }
      entries.push({ name, method, flags, crc32: crc, compressedSize, uncompressedSize, localHeaderOffset });
      p = extraEnd + commentLen;
    }
    return entries;
  }

  private safeNumber(v: bigint, what: string): number {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`zip ${what} ${v} is out of range`);
    return Number(v);
  }
}

let crcTable: Uint32Array | undefined;

function table(): Uint32Array {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  return crcTable;
}

/** CRC-32 (IEEE). Uses zlib.crc32 where Node has it (20.15+); VS Code's bundled Node may be older. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
  return typeof native === 'function' ? native(data) >>> 0 : crc32Js(data);
}

/** Table-driven CRC-32 in plain JS (the fallback; exported so tests can cover it). */
export function crc32Js(data: Uint8Array): number {
  const t = table();
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
