// A run's settings from where they come from: defaults, then a config file, then what the user
// set on top of it (`met train` flags; the folder and weights picked in the editor, then the
// editor's overrides), then the head count beside the weights when nothing set it. `met train`,
// `met train --dry-run` and the engine server's train/resolve all resolve through resolveSettings,
// so the same inputs give the same settings at every front door.
//
// Pure: no runtime path to sharp or onnxruntime-node.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainConfig } from '../engine/run/config';
import { resolveConfig, validateConfig } from '../engine/run/schema';
import { loadConfigFile } from './configFile';

/**
 * The head count of a backbone whose width is not a standard ViT's cannot be read off its
 * tensors. A config.json next to the weights often says it: the project's own format
 * (assets/tiny-vit/config.json: {"config": {"heads": 4}}) or Hugging Face's (num_attention_heads).
 */
export function headsBesideWeights(weights: string): { heads: number; file: string } | null {
  const file = path.join(path.dirname(weights), 'config.json');
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      config?: { heads?: unknown };
      num_attention_heads?: unknown;
    };
    const h = j.config?.heads ?? j.num_attention_heads;
    return Number.isInteger(h) && (h as number) > 0 ? { heads: h as number, file } : null;
  } catch {
    return null;
  }
}

/** Settings laid over the config file, in order (later wins); `where` names them in errors. */
export interface SettingsLayer {
  where: string;
  values: Record<string, unknown>;
}

export interface SettingsInput {
  /** met.config.json to start from (its relative paths are relative to it). */
  configFile?: string;
  layers?: SettingsLayer[];
  /** Relative data and weights paths given outside a config file are relative to this folder. */
  workspaceRoot: string;
}

/**
 * Settings as they come over IPC: structured clone keeps keys whose value is undefined (an unset
 * optional field on the host), which the validator would reject as wrong types.
 */
export function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Path as the user should read it: relative to the workspace when inside it. */
function shown(file: string, root: string): string {
  const rel = path.relative(root, file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}

/**
 * Complete, validated settings (data and weights absolute) and notes on where some came from.
 * Throws UserError naming the file or layer at fault, or the missing required setting.
 */
export function resolveSettings(input: SettingsInput): { config: TrainConfig; notes: string[] } {
  const notes: string[] = [];
  const file = input.configFile ? loadConfigFile(input.configFile) : {};
  if (input.configFile) notes.push(`settings start from ${input.configFile}`);
  const merged: Partial<TrainConfig> = { ...file };
  for (const l of input.layers ?? []) Object.assign(merged, validateConfig(definedOnly(l.values), l.where));
  if (merged.heads === undefined && merged.weights) {
    const h = headsBesideWeights(path.resolve(input.workspaceRoot, merged.weights));
    if (h) {
      merged.heads = h.heads;
      notes.push(`heads ${h.heads} from ${shown(h.file, input.workspaceRoot)}`);
    }
  }
  const config = resolveConfig(merged, {});
  for (const k of ['data', 'weights'] as const) config[k] = path.resolve(input.workspaceRoot, config[k]);
  return { config, notes };
}
