// Weight loading: read a checkpoint file of any supported format, convert its key layout to the
// canonical timm names, infer the ViT configuration, and check every tensor's shape.
//
//   .safetensors                 safetensors.ts
//   .pth / .pt / .bin (zip)      pth.ts (restricted unpickler in pickle.ts, zip reader in zip.ts)
//   .npz                         npz.ts (Google ViT checkpoints)
//
// The format is chosen by the file's magic bytes, falling back to the extension only to word the
// error for files that match nothing.

import * as path from 'path';
import { type HostTensor, UserError } from '../tensor';
import type { VitConfig } from '../model/config';
import { type CanonicalWeights, LAYOUTS, type Layout, detectLayout, formatReport, toCanonical } from './layouts';
import { decodeNpz, looksLikeNpy } from './npz';
import { decodePth } from './pth';
import { decodeSafetensors, readFileOrThrow } from './safetensors';
import { ZipArchive, looksLikeZip } from './zip';

export type CheckpointFormat = 'safetensors' | 'pth' | 'npz';

export interface Checkpoint {
  format: CheckpointFormat;
  /** Tensors under the checkpoint's own names, in their stored dtypes. */
  tensors: Map<string, HostTensor>;
}

/** True when the bytes look like safetensors: a plausible header length followed by '{'. */
function looksLikeSafetensors(buf: Buffer): boolean {
  if (buf.length < 10) return false;
  const n = buf.readBigUInt64LE(0);
  return n >= 2n && n <= BigInt(buf.length - 8) && buf[8] === 0x7b; // '{'
}

/** Explains files that are recognisably something other than a checkpoint. */
function notACheckpoint(buf: Buffer, file: string): UserError {
  const head = buf.toString('latin1', 0, Math.min(buf.length, 64));
  let what = 'not a recognised checkpoint';
  if (buf.length === 0) what = 'the file is empty';
  else if (head.startsWith('version https://git-lfs'))
    what = 'this is a Git LFS pointer, not the weights themselves (run `git lfs pull`)';
  else if (head.startsWith('\x89HDF')) what = 'HDF5 (Keras .h5) weights are not supported';
  else if (looksLikeNpy(buf)) what = 'a single .npy array, not a checkpoint (expected an .npz archive of named arrays)';
  else if (head.startsWith('GGUF')) what = 'GGUF files are not supported';
  return new UserError(
    `${file}: ${what}; expected .safetensors, a PyTorch zip checkpoint (.pth/.pt/.bin) or a numpy .npz`,
  );
}

/** Decodes checkpoint bytes; `file` names the file in errors and its extension words them. */
export function decodeCheckpoint(buf: Buffer, file: string): Checkpoint {
  const ext = path.extname(file).toLowerCase();
  // A Git LFS pointer (a clone without `git lfs pull`) would otherwise get a confusing format error.
  if (buf.toString('latin1', 0, 64).startsWith('version https://git-lfs')) throw notACheckpoint(buf, file);
  if (looksLikeZip(buf)) {
    // Both torch.save and np.savez write zips; the entries tell them apart.
    const names = new ZipArchive(buf, file).entries.map((e) => e.name);
    if (names.some((n) => /^([^/]+\/)?data\.pkl$/.test(n))) return { format: 'pth', tensors: decodePth(buf, file) };
    if (names.length > 0 && names.every((n) => n.endsWith('.npy') || n.endsWith('/')))
      return { format: 'npz', tensors: decodeNpz(buf, file) };
    throw new UserError(
      `${file}: a zip archive that is neither a PyTorch checkpoint (no data.pkl) nor a numpy .npz (entries: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''})`,
    );
  }
  if (ext === '.safetensors' || looksLikeSafetensors(buf))
    return { format: 'safetensors', tensors: decodeSafetensors(buf, file) };
  // A pickle (legacy torch.save) or a tar (pre-0.4 torch.save): decodePth explains how to convert it.
  const isTar = buf.length > 262 && buf.toString('latin1', 257, 262) === 'ustar';
  if (
    (buf.length > 0 && buf[0] === 0x80) ||
    isTar ||
    (['.pth', '.pt', '.bin', '.ckpt'].includes(ext) && buf.length > 0)
  ) {
    return { format: 'pth', tensors: decodePth(buf, file) };
  }
  if (ext === '.npz' && buf.length > 0) return { format: 'npz', tensors: decodeNpz(buf, file) };
  throw notACheckpoint(buf, file);
}

/** Reads a checkpoint file of any supported format (tensors under their original names). */
export function readCheckpoint(file: string): Checkpoint {
  return decodeCheckpoint(readFileOrThrow(file), file);
}

/**
 * Drops the 'module.' prefix that nn.DataParallel / DistributedDataParallel put on every key.
 * Only when every key has it, so that a model with a submodule really called 'module' is left alone.
 */
export function stripModulePrefix(state: Map<string, HostTensor>): Map<string, HostTensor> {
  const keys = [...state.keys()];
  if (keys.length === 0 || !keys.every((k) => k.startsWith('module.'))) return state;
  return new Map([...state].map(([k, v]) => [k.slice('module.'.length), v]));
}

export interface LoadOptions {
  /** Key layout; 'auto' (default) detects it from the keys. */
  layout?: Layout | 'auto';
  /** Config values that win over what the shapes say (heads, act, mean/std, imageSize...). */
  overrides?: Partial<VitConfig>;
}

export interface LoadedBackbone extends CanonicalWeights {
  layout: Layout;
  format: CheckpointFormat;
}

/**
 * Loads a ViT backbone: canonical float32 tensors, the inferred config, and the report.
 * Throws UserError naming the file when it is unreadable, not a checkpoint, unsafe, or when any
 * tensor the config needs is missing or mis-shaped. Unexpected keys alone do not throw: they are
 * in `report.unexpected` for the caller to print (formatReport).
 */
export function loadBackbone(file: string, opts: LoadOptions = {}): LoadedBackbone {
  const { format, tensors: raw } = readCheckpoint(file);
  const state = stripModulePrefix(raw);
  const requested = opts.layout ?? 'auto';
  if (requested !== 'auto' && !LAYOUTS.includes(requested)) {
    throw new UserError(`${file}: unknown layout '${String(requested)}' (supported: auto, ${LAYOUTS.join(', ')})`);
  }
  const layout = requested === 'auto' ? detectLayout(state.keys(), file) : requested;
  const result = toCanonical(state, layout, opts.overrides ?? {}, file);
  const { report } = result;
  if (report.missing.length > 0 || report.mismatched.length > 0) {
    const problems = report.missing.length + report.mismatched.length;
    throw new UserError(
      `${file}: cannot load as a ${layout} ViT backbone (${problems} missing or mis-shaped tensor${problems === 1 ? '' : 's'}):\n` +
        formatReport(report, file),
    );
  }
  return { ...result, layout, format };
}
