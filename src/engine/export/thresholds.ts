// Thresholds as they travel through JSON files.
//
// Budgeted inference uses +Infinity ("nobody leaves at this exit") and -Infinity ("everybody
// left leaves here", the last exit), and MSDNet's procedure can also produce NaN (nobody
// leaves). JSON has none of them: JSON.stringify writes all three as null, which is what a
// run's thresholds.json holds. null is still unambiguous once the position is known: at the last
// used exit every sample leaves whatever the threshold, and anywhere else an infinite or NaN
// threshold lets nobody through. Exported files are explicit instead: the strings "Infinity" and
// "-Infinity" (which JavaScript's Number() and Python's float() both parse).

import type { ThresholdsFile } from '../run/run';

export type JsonThreshold = number | 'Infinity' | '-Infinity' | null;

/** A threshold read from JSON; `last`: the last exit a sample can reach, which accepts all. */
export function decodeThreshold(v: unknown, last: boolean): number {
  if (last) return -Infinity;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = Number(v);
    // "NaN" or junk: no sample can pass it, the same as +Infinity.
    return Number.isNaN(n) ? Infinity : n;
  }
  return Infinity; // null / missing: +Infinity or NaN written by JSON.stringify
}

/** A threshold for JSON: finite numbers as they are, infinities as strings, NaN as "Infinity". */
export function encodeThreshold(t: number): JsonThreshold {
  if (Number.isFinite(t)) return t;
  return t === -Infinity ? '-Infinity' : 'Infinity';
}

export interface ChosenOperatingPoint {
  /** 0-based exits used for budgeted inference, ascending. */
  used: number[];
  /** One threshold per exit of the network (length K): unused exits +Infinity, the last used -Infinity. */
  perExit: number[];
  /** The run's thresholds for the used exits, decoded. */
  thresholds: number[];
  p: number | null;
  source: string;
}

/**
 * The run's chosen thresholds spread over all K exits of the network, for a runner that
 * evaluates every exit in turn (SegmentRunner.dynamic, an exported chain). Without a
 * thresholds.json (a run that never got to evaluation) every sample runs to the last exit.
 */
export function chosenOperatingPoint(th: ThresholdsFile | null, K: number): ChosenOperatingPoint {
  const used = th ? th.exits.slice() : Array.from({ length: K }, (_, j) => j);
  if (!used.length || used.some((j, i) => !Number.isInteger(j) || j < 0 || j >= K || (i > 0 && j <= used[i - 1])))
    throw new Error(`thresholds.json: exits [${used.join(', ')}] do not fit a network with ${K} exits`);
  const raw: unknown[] = th ? th.chosen.thresholds : used.map(() => null);
  if (raw.length !== used.length)
    throw new Error(`thresholds.json: ${raw.length} chosen thresholds for ${used.length} exits`);
  const thresholds = raw.map((v, i) => decodeThreshold(v, i === used.length - 1));
  const perExit = new Array<number>(K).fill(Infinity);
  used.forEach((j, i) => (perExit[j] = thresholds[i]));
  return {
    used,
    perExit,
    thresholds,
    p: th ? th.chosen.p : null,
    source: th ? th.chosen.source : 'no thresholds.json in the run: every sample runs to the last exit',
  };
}
