// The text "MET: Create config" writes: every setting of src/engine/run/schema.ts with its help
// as a comment and its default as the value, so the defaults are visible where they are changed.
// Settings without a fixed default (they come from the checkpoint or the backbone's depth) are
// written commented out with an example. `met train` and the extension read // comment lines
// (whole lines only), so the file stays loadable as it is. No vscode import: unit-tested in Node.

import { TRAIN_DEFAULTS } from '../engine/run/config';
import { FIELDS } from '../engine/settings';

/** Examples for settings whose default depends on the checkpoint or is "unset". */
const EXAMPLES: Record<string, unknown> = {
  imageSize: 224,
  channels: 3,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  heads: 12,
  backboneAct: 'gelu',
  exits: [6, 7, 8, 9, 10, 11, 12],
  dynamicExits: [1, 4, 7],
  threads: 4,
  out: '.met/runs/my-run',
  targets: 'data/targets.csv',
};

/** Wraps help text into // lines of at most `width` characters. */
function commentLines(text: string, indent: string, width = 100): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(/\s+/)) {
    if (line && indent.length + 3 + line.length + 1 + w.length > width) {
      out.push(`${indent}// ${line}`);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(`${indent}// ${line}`);
  return out;
}

/** JSON with a space after commas in arrays ([6, 7, 8]), as people write it. */
const json = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]` : JSON.stringify(v);

export interface TemplateOptions {
  /** "data" value (relative to the config file); a placeholder when unknown. */
  data?: string;
  /** "weights" value; a placeholder when unknown. */
  weights?: string;
  /** Settings to write instead of the defaults (e.g. heads of a non-standard backbone). */
  values?: Record<string, unknown>;
}

export function configTemplate(o: TemplateOptions = {}): string {
  const indent = '  ';
  const lines = [
    '// MET fine-tuning settings, read by "MET: Fine-tune on folder" and by `npx met train --config <this file>`.',
    '// Paths are relative to this file. Every setting is listed with its default; delete the ones you',
    '// do not change. Commented-out settings have no fixed default (the checkpoint or the backbone decides).',
    '{',
  ];
  const values: Record<string, unknown> = {
    ...TRAIN_DEFAULTS,
    data: o.data ?? 'path/to/images',
    weights: o.weights ?? 'path/to/backbone.safetensors',
    ...o.values,
  };
  // Active entries are collected first: only then is it known which one is last (no trailing comma).
  const entries: { comment: string[]; text: string; active: boolean }[] = FIELDS.map((f) => {
    const v = values[f.key];
    const active = v !== undefined;
    const shown = active ? v : EXAMPLES[f.key];
    const comment = commentLines(f.help + (f.choices ? ` One of: ${f.choices.join(', ')}.` : ''), indent);
    return { comment, text: `${JSON.stringify(f.key)}: ${json(shown)}`, active };
  });
  // The file must end with an active entry: commented-out ones carry a trailing comma, so that
  // uncommenting any of them keeps the JSON valid. Commented entries after the last active one
  // move in front of it.
  const last = entries.map((e) => e.active).lastIndexOf(true);
  const ordered = [...entries.slice(0, last), ...entries.slice(last + 1), entries[last]];
  ordered.forEach((e, i) => {
    lines.push(...e.comment);
    if (e.active) lines.push(`${indent}${e.text}${i < ordered.length - 1 ? ',' : ''}`);
    else lines.push(`${indent}// ${e.text},`);
  });
  lines.push('}', '');
  return lines.join('\n');
}
