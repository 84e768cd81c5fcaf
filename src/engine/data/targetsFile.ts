// A regression folder's targets file: where it is, how it parses, how it joins to the images.
// Split from targets.ts (which adds the seeded split) so that the extension host can read a
// folder's targets (Inspect exits on a regression run) without loading the image decoder:
// fs, path and type-only imports here.
//
// The formats and the lookup order are described in targets.ts.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../tensor';
import type { SkippedFile } from './folder';

/** Names looked for at the root of a regression data folder, in order. */
export const TARGET_FILE_NAMES: readonly string[] = [
  'targets.csv',
  'targets.json',
  'labels.csv',
  'labels.json',
  'values.csv',
  'values.json',
];

/** A regression sample: `label` is always 0 (the image pipeline wants one), `value` the target. */
export interface RegressionSample {
  file: string;
  label: number;
  value: number;
}

export interface TargetEntry {
  key: string;
  /** NaN when the value is missing or not a number (`problem` says which). */
  value: number;
  /** Where it came from, for messages: "targets.csv line 4" or "labels.json key \"a.png\"". */
  where: string;
  problem?: string;
}

const normKey = (k: string) => k.trim().replace(/\\/g, '/').replace(/^\.\//, '').normalize('NFC');

/** A number from a field, or NaN with why not. */
function parseValue(raw: unknown): { value: number; problem?: string } {
  if (typeof raw === 'number')
    return Number.isFinite(raw) ? { value: raw } : { value: NaN, problem: `value ${raw} is not finite` };
  if (raw === null || raw === undefined || (typeof raw === 'string' && raw.trim() === ''))
    return { value: NaN, problem: 'no value' };
  if (typeof raw === 'string') {
    const v = Number(raw.trim());
    return Number.isFinite(v) ? { value: v } : { value: NaN, problem: `value "${raw.trim()}" is not a number` };
  }
  return { value: NaN, problem: `value ${JSON.stringify(raw)} is not a number` };
}

/** Splits one CSV line into fields (double quotes group, "" is a literal quote). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (q) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Parses a targets file's text. Throws a UserError naming `name` and the line (CSV) or key (JSON). */
export function parseTargets(text: string, name: string): TargetEntry[] {
  const out: TargetEntry[] = [];
  const seen = new Map<string, string>();
  const add = (key: string, raw: unknown, where: string) => {
    const k = normKey(key);
    if (!k) throw new UserError(`${where}: empty file name`);
    const prev = seen.get(k);
    if (prev) throw new UserError(`${where}: '${k}' is listed twice (first at ${prev})`);
    seen.set(k, where);
    const v = parseValue(raw);
    out.push({ key: k, value: v.value, where, ...(v.problem ? { problem: v.problem } : {}) });
  };
  if (name.toLowerCase().endsWith('.json')) {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${name}: not valid JSON (${(e as Error).message})`);
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj))
      throw new UserError(`${name}: expected an object {"file": value, ...}`);
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) add(k, v, `${name} key ${JSON.stringify(k)}`);
    return out;
  }
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let first = true;
  lines.forEach((line, i) => {
    const where = `${name} line ${i + 1}`;
    if (!line.trim() || line.trimStart().startsWith('#')) return;
    const f = csvFields(line);
    if (f.length !== 2) throw new UserError(`${where}: expected 2 fields (file,value), found ${f.length}`);
    // A header: the first data line whose value is not a number.
    if (first && !Number.isFinite(Number(f[1].trim())) && f[1].trim() !== '') {
      first = false;
      return;
    }
    first = false;
    add(f[0], f[1], where);
  });
  return out;
}

/** The targets file of a folder: the explicit one, or the first of TARGET_FILE_NAMES at its root. */
export function findTargetsFile(root: string, explicit?: string): string {
  if (explicit) {
    const f = path.resolve(explicit);
    if (!fs.existsSync(f)) throw new UserError(`targets: ${f} does not exist`);
    return f;
  }
  for (const n of TARGET_FILE_NAMES) {
    const f = path.join(root, n);
    if (fs.existsSync(f)) return f;
  }
  throw new UserError(
    `${root}: a regression run needs a targets file (one of ${TARGET_FILE_NAMES.join(', ')} at the folder's root, or --targets FILE)`,
  );
}

/** Per-sample values joined to images; what did not join goes to `skipped` / `warnings`. */
export function joinTargets(
  root: string,
  images: string[],
  entries: TargetEntry[],
  targetsName: string,
): { samples: RegressionSample[]; skipped: SkippedFile[]; warnings: string[] } {
  const rel = (f: string) => path.relative(root, f).split(path.sep).join('/').normalize('NFC');
  const byRel = new Map(images.map((f) => [rel(f), f]));
  const byBase = new Map<string, string | null>();
  for (const f of images) {
    const b = path.basename(f).normalize('NFC');
    byBase.set(b, byBase.has(b) ? null : f); // null: ambiguous
  }
  const valueOf = new Map<string, TargetEntry>();
  const unmatched: string[] = [];
  for (const e of entries) {
    const f = byRel.get(e.key) ?? (e.key.includes('/') ? undefined : (byBase.get(e.key) ?? undefined));
    if (!f) {
      unmatched.push(`${e.key} (${e.where})`);
      continue;
    }
    if (valueOf.has(f)) throw new UserError(`${e.where}: '${e.key}' names the same image as ${valueOf.get(f)!.where}`);
    valueOf.set(f, e);
  }
  const samples: RegressionSample[] = [];
  const skipped: SkippedFile[] = [];
  for (const f of images) {
    const e = valueOf.get(f);
    if (!e) skipped.push({ file: f, reason: `no value in ${targetsName}` });
    else if (e.problem) skipped.push({ file: f, reason: `${e.where}: ${e.problem}` });
    else samples.push({ file: f, label: 0, value: e.value });
  }
  const warnings: string[] = [];
  if (unmatched.length)
    warnings.push(
      `${unmatched.length} entr${unmatched.length === 1 ? 'y' : 'ies'} of ${targetsName} name no image in the folder: ${unmatched.slice(0, 5).join(', ')}${unmatched.length > 5 ? ', ...' : ''}`,
    );
  return { samples, skipped, warnings };
}
