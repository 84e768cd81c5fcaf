// A study: one folder of ordinary run folders that share a base configuration (data, backbone,
// split, seed, schedule) and differ by a few settings each, the paper's ablations (`met ablate`).
//
//   STUDY/study.json        { version, createdAt, base, variants: [{ name, overrides, run }] }
//   STUDY/<run>/            a run folder like any other (met eval, the panels, --resume work on it)
//   STUDY/comparison.json   what `met ablate --json` prints; comparison.csv / comparison.txt
//
// Pure (Node fs only): the extension reads studies with it; study/ablate.ts trains them.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic';
import { RUN_FILE, readJson, readRunStatus } from '../run/runFolder';
import { validateConfig } from '../run/schema';
import type { TrainConfig } from '../run/config';
import { FIELDS, flagOf } from '../settings';
import { UserError } from '../tensor';

export const STUDY_FILE = 'study.json';
export const STUDY_VERSION = 1;

export interface StudyVariant {
  /** As given on the command line (`met`, `no_gr`, `met:lambda=0.1`); the table's row name. */
  name: string;
  /** Settings laid over the base for this run. */
  overrides: Partial<TrainConfig>;
  /** The run folder, relative to the study folder. */
  run: string;
}

export interface StudyFile {
  version: number;
  createdAt: string;
  /** The settings every run shares (resolved: data and weights absolute; no `out`). */
  base: Partial<TrainConfig> & Record<string, unknown>;
  variants: StudyVariant[];
}

/** The paper's ablation set (Table 4/5 of arXiv 2409.13999 and docs/method.md §5). */
export const BUILTIN_VARIANTS: Readonly<Record<string, { overrides: Partial<TrainConfig>; help: string }>> = {
  met: { overrides: { variant: 'met' }, help: 'MET: E-adapters before MHA and MLP, graph regularization' },
  no_gr: { overrides: { variant: 'no_gr' }, help: 'MET without graph regularization' },
  shared_cls: { overrides: { variant: 'shared_cls' }, help: 'one class token (diagonal) shared by every exit' },
  linear_probe: { overrides: { variant: 'linear_probe' }, help: 'frozen backbone, a linear head per exit layer' },
  mha_only: {
    overrides: { variant: 'met', eaPositions: 'mha' },
    help: "E-adapters before the MHA only (the paper's MET_MG)",
  },
  mlp_only: {
    overrides: { variant: 'met', eaPositions: 'mlp' },
    help: "E-adapters before the MLP only (the paper's MET_FG)",
  },
};

export const DEFAULT_VARIANTS = Object.keys(BUILTIN_VARIANTS);

/** Settings that do not change what a run computes: a study may be continued with other values. */
const RUNTIME_KEYS = new Set(['device', 'threads', 'out']);

const byKeyOrFlag = new Map<string, (typeof FIELDS)[number]>(
  FIELDS.flatMap((f) => [[f.key as string, f] as const, [flagOf(f), f] as const]),
);

/** A value from the command line as the setting's kind wants it ("0.1" → 0.1, "6,9,12" → [6, 9, 12]). */
function parseValue(f: (typeof FIELDS)[number], raw: string, where: string): unknown {
  const num = (s: string) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n)) throw new UserError(`${where}: '${s}' is not a number`);
    return n;
  };
  switch (f.kind) {
    case 'int':
    case 'number':
      return num(raw);
    case 'ints':
    case 'numbers':
      return raw.split(',').map(num);
    case 'bool':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new UserError(`${where}: '${raw}' is not true or false`);
    default:
      return raw;
  }
}

/**
 * One `--variants` item: a built-in name, optionally followed by `:key=value` settings
 * (config keys or flag names), e.g. `met:grForm=ratio:lambda=0.1`.
 */
export function parseVariant(spec: string): StudyVariant {
  const [head, ...sets] = spec.split(':');
  const where = `--variants ${spec}`;
  const builtin = BUILTIN_VARIANTS[head];
  if (!builtin)
    throw new UserError(
      `${where}: unknown variant '${head}' (one of ${DEFAULT_VARIANTS.join(', ')}, optionally followed by :key=value)`,
    );
  const raw: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UserError(`${where}: '${s}' is not key=value`);
    const k = s.slice(0, eq);
    const f = byKeyOrFlag.get(k);
    if (!f) throw new UserError(`${where}: unknown setting '${k}'`);
    if (f.key === 'data' || f.key === 'weights' || f.key === 'out')
      throw new UserError(`${where}: '${k}' is shared by the whole study; set it outside --variants`);
    raw[f.key] = parseValue(f, s.slice(eq + 1), where);
  }
  const overrides = { ...builtin.overrides, ...validateConfig(raw, where) };
  return { name: spec, overrides, run: runFolderName(spec) };
}

/** A folder name for a variant on every OS (no ':' on Windows, no separators). */
export function runFolderName(spec: string): string {
  return spec.replace(/:/g, '+').replace(/[\\/*?"<>|\s]/g, '_');
}

/** The variants asked for: `--variants` (default the paper's six) and the extra axes. */
export function studyVariants(o: {
  variants?: string[];
  lambdas?: number[];
  ranks?: number[];
  branches?: string[];
  exitSets?: number[][];
  copycat?: number[];
}): StudyVariant[] {
  const specs = [...(o.variants?.length ? o.variants : DEFAULT_VARIANTS)];
  for (const l of o.lambdas ?? []) specs.push(`met:lambda=${l}`);
  for (const r of o.ranks ?? []) specs.push(`met:rank=${r}`);
  for (const b of o.branches ?? []) specs.push(`met:branch=${b}`);
  for (const e of o.exitSets ?? []) specs.push(`met:exits=${e.join(',')}`);
  for (const w of o.copycat ?? []) specs.push(`met:distill=${w}`);
  const out: StudyVariant[] = [];
  for (const s of specs) {
    const v = parseVariant(s);
    if (!out.some((x) => x.run === v.run)) out.push(v);
  }
  return out;
}

/** The base settings that matter for the results, as the study compares them. */
function comparable(base: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(base)
      .filter(([k, v]) => !RUNTIME_KEYS.has(k) && v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

/** Default study folder: the same base settings give the same folder, so re-running continues it. */
export function defaultStudyDir(root: string, base: Record<string, unknown>): string {
  const h = crypto
    .createHash('sha256')
    .update(JSON.stringify(comparable(base)))
    .digest('hex')
    .slice(0, 8);
  return path.join(root, '.met', 'studies', `ablate-${h}`);
}

export function readStudy(dir: string): StudyFile | null {
  const file = path.join(dir, STUDY_FILE);
  if (!fs.existsSync(file)) return null;
  const s = readJson<StudyFile>(file);
  if (s?.version !== STUDY_VERSION || !Array.isArray(s.variants) || !s.base)
    throw new UserError(`${file}: not a study file of version ${STUDY_VERSION}`);
  return s;
}

/**
 * The study in `dir` for these settings: a new one, or the existing one with any new variants
 * appended. A folder whose study was made with other base settings is refused, naming them.
 */
export function openStudy(dir: string, base: Record<string, unknown>, variants: StudyVariant[]): StudyFile {
  const old = readStudy(dir);
  if (old) {
    const a = comparable(old.base);
    const b = comparable(base);
    const differ = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
      (k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]),
    );
    if (differ.length)
      throw new UserError(
        `${dir} holds a study made with other settings (${differ
          .map((k) => `${k}: ${JSON.stringify(a[k])} there, ${JSON.stringify(b[k])} here`)
          .join('; ')}); use another --out`,
      );
    const merged = [...old.variants];
    for (const v of variants) if (!merged.some((x) => x.run === v.run)) merged.push(v);
    return { ...old, variants: merged };
  }
  if (fs.existsSync(dir) && fs.readdirSync(dir).length)
    throw new UserError(`${dir} is not empty and holds no ${STUDY_FILE}: use another --out`);
  return { version: STUDY_VERSION, createdAt: new Date().toISOString(), base, variants };
}

export function writeStudy(dir: string, s: StudyFile): void {
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, STUDY_FILE), JSON.stringify(s, null, 1));
}

export type VariantState = 'done' | 'resumable' | 'new';

/** Where a variant's run stands: finished (results written), interrupted after a checkpoint, or to start. */
export function variantState(studyDir: string, v: StudyVariant): VariantState {
  const dir = path.join(studyDir, v.run);
  const st = readRunStatus(dir);
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  if (st?.phase === 'done' && has(RUN_FILE.predictions) && has(RUN_FILE.thresholds) && has(RUN_FILE.trainable))
    return 'done';
  if (has(RUN_FILE.checkpoint) && has(RUN_FILE.config)) return 'resumable';
  return 'new';
}
