// met.config.json: reading one, and finding the one that applies. The CLI (`met train`, `met
// params`), the engine server (train/resolve, params/compute) and the extension (the fine-tune
// flow, the CodeLens) all go through here, so a file means the same thing at every front door.
//
// Pure: no runtime path to sharp or onnxruntime-node (the extension host imports it).

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainConfig } from '../engine/run/config';
import { validateConfig } from '../engine/run/schema';
import { UserError } from '../engine/tensor';
import { parseJsonc } from './jsonc';

export const CONFIG_FILE_NAME = 'met.config.json';

/** A MET config file by its name: `met.config.json`, or any `*.met.json` (the schema's and the
 *  CodeLens' file patterns in package.json). */
export const isConfigFileName = (file: string): boolean =>
  path.basename(file) === CONFIG_FILE_NAME || file.endsWith('.met.json');

/** Settings that name files; in a config file they are relative to the file. */
const PATH_KEYS = ['data', 'weights', 'out'] as const;

/** A config object's relative paths made absolute against the folder of `file` (a copy). */
export function absolutePaths<T extends Record<string, unknown>>(obj: T, file: string): T {
  const dir = path.dirname(path.resolve(file));
  const out: Record<string, unknown> = { ...obj };
  for (const k of PATH_KEYS)
    if (typeof out[k] === 'string' && out[k] && !path.isAbsolute(out[k] as string))
      out[k] = path.join(dir, out[k] as string);
  return out as T;
}

/**
 * The settings in a config file's text (JSON with comments, as VS Code's jsonc mode lets users
 * write it), validated; errors name `file`. `text` is the file's (or an editor buffer's) content.
 */
export function parseConfigText(text: string, file: string): Partial<TrainConfig> {
  let obj: unknown;
  try {
    obj = parseJsonc(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`, 'config-unreadable');
  }
  return absolutePaths(validateConfig(obj, file) as Record<string, unknown>, file) as Partial<TrainConfig>;
}

/** A met.config.json as every front door reads it (JSON with comments, paths relative to the file). */
export function loadConfigFile(file: string): Partial<TrainConfig> {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(
      `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      'config-unreadable',
    );
  }
  return parseConfigText(raw, file);
}

/**
 * The data folder and weights a config file names (absolute), without validating the rest: the
 * extension peeks at them to skip its pickers. {} when the file is unreadable or not JSON (the
 * engine reports that when it reads the file for real).
 */
export async function configFilePaths(file: string): Promise<{ data?: string; weights?: string }> {
  try {
    const obj = parseJsonc(await fs.promises.readFile(file, 'utf8'));
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return {};
    const abs = absolutePaths(obj as Record<string, unknown>, file);
    const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    return { data: str(abs.data), weights: str(abs.weights) };
  } catch {
    return {};
  }
}

/**
 * The config file that applies: the one named explicitly, else met.config.json in the first of
 * `dirs` that has one (`met train`: the working folder; the extension: the image folder, then
 * its workspace root). undefined: none, the settings are flags and defaults only.
 */
export function findConfigFile(explicit: string | undefined, dirs: readonly string[]): string | undefined {
  if (explicit) return explicit;
  for (const d of dirs) {
    const f = path.join(d, CONFIG_FILE_NAME);
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}
