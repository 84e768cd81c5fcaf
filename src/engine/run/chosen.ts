// Saving a run's chosen operating point (thresholds.json `chosen`), e.g. from the budget
// slider. `met predict --run` and `met export` use whatever is chosen there.
//
// Deliberately light (node:fs and type imports only): the extension host calls it directly,
// without a round trip to the engine process, and must not pull onnxruntime or sharp into its
// bundle.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeThreshold } from '../export/thresholds';
import { UserError } from '../tensor';
import type { ThresholdsFile } from './run';
import { writeFileAtomic } from '../io/atomic';

/** A threshold as it may arrive: a number, or null / "Infinity" / "-Infinity" (JSON has no infinities). */
export type ThresholdValue = number | null | 'Infinity' | '-Infinity';

export interface ChosenPoint {
  /** The curve point's p, or null for thresholds that are not on the run's curve. */
  p: number | null;
  /** One per used exit (thresholds.json `exits`); the last one is ignored (that exit takes everyone). */
  thresholds: ThresholdValue[];
  /** Where the choice came from (default 'slider'). */
  source?: string;
}

function readThresholdsFile(file: string): ThresholdsFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      code === 'ENOENT'
        ? `${file} does not exist (the run has not been evaluated yet)`
        : `cannot read ${file} (${code ?? (e as Error).message})`,
    );
  }
  try {
    return JSON.parse(text) as ThresholdsFile;
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function decoded(v: unknown, last: boolean, file: string, i: number): number {
  const ok = v === null || v === 'Infinity' || v === '-Infinity' || (typeof v === 'number' && !Number.isNaN(v));
  if (!ok)
    throw new UserError(
      `${file}: threshold ${i + 1} must be a number, null, "Infinity" or "-Infinity", got ${JSON.stringify(v)}`,
    );
  return decodeThreshold(v, last);
}

/**
 * As the run's own thresholds.json holds them: numbers, with +Infinity (nobody leaves) and the
 * last exit written as null by JSON.stringify. -Infinity before the last exit (everybody left
 * leaves there) would read back as +Infinity from null, so it is written as "-Infinity".
 */
function stored(t: number, last: boolean): number {
  if (last || t === Infinity) return -Infinity; // JSON.stringify: null
  return t === -Infinity ? ('-Infinity' as unknown as number) : t;
}

/**
 * Makes `point` the run's chosen operating point: validates it against the run's
 * thresholds.json (one threshold per used exit; a point with a p must be that curve point) and
 * rewrites the file atomically (temporary file + rename), leaving everything else as it was.
 * Returns the `chosen` it wrote.
 */
export function saveChosenThresholds(runDir: string, point: ChosenPoint): ThresholdsFile['chosen'] {
  const file = path.join(path.resolve(runDir), 'thresholds.json');
  const th = readThresholdsFile(file);
  if (!Array.isArray(th.exits) || !th.exits.length) throw new UserError(`${file}: no used exits`);
  const M = th.exits.length;
  if (!point || !Array.isArray(point.thresholds)) throw new UserError(`${file}: the point to save has no thresholds`);
  if (point.thresholds.length !== M)
    throw new UserError(
      `${file}: ${point.thresholds.length} thresholds given for the run's ${M} used exits (${th.exits.map((j) => j + 1).join(', ')})`,
    );
  const T = point.thresholds.map((v, i) => decoded(v, i === M - 1, file, i));
  if (point.p !== null) {
    if (typeof point.p !== 'number' || !Number.isFinite(point.p))
      throw new UserError(`${file}: p must be a number or null, got ${JSON.stringify(point.p)}`);
    const onCurve = (th.curve ?? []).find((c) => c.p === point.p);
    if (!onCurve)
      throw new UserError(
        `${file}: p = ${point.p} is not a point of the run's curve (${(th.curve ?? []).map((c) => c.p).join(', ')})`,
      );
    const curveT = onCurve.thresholds.map((v, i) => decodeThreshold(v, i === M - 1));
    if (curveT.some((t, i) => t !== T[i]))
      throw new UserError(
        `${file}: the thresholds given are not those of the curve point p = ${point.p}; save other thresholds with p = null`,
      );
  }
  const chosen: ThresholdsFile['chosen'] = {
    p: point.p,
    thresholds: T.map((t, i) => stored(t, i === M - 1)),
    source: point.source ?? 'slider',
  };
  writeFileAtomic(file, JSON.stringify({ ...th, chosen }, null, 1));
  return JSON.parse(JSON.stringify(chosen)) as ThresholdsFile['chosen'];
}
