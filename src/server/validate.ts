// Checks a request's params against the protocol's types (src/protocol.ts RequestMap) before a
// handler sees them. The host is typed, but the engine is a process anyone can fork and speak
// to: a missing or mistyped field must come back as a named error ('params-invalid', the method
// and the field), not as a TypeError from deep inside a handler. One hand-written shape per
// method; the settings objects (config, overrides, settings) are only checked to be objects here
// and validated field by field by the engine's schema (validateConfig) where they are used.

import { ProtocolError, type RequestMethod } from '../protocol';

type Check = (v: unknown) => string | null;

const str: Check = (v) => (typeof v === 'string' ? null : 'a string');
const bool: Check = (v) => (typeof v === 'boolean' ? null : 'true or false');
const num: Check = (v) => (typeof v === 'number' && Number.isFinite(v) ? null : 'a finite number');
const posInt: Check = (v) => (Number.isInteger(v) && (v as number) > 0 ? null : 'a positive integer');
const obj: Check = (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? null : 'an object');
const oneOf =
  (...choices: string[]): Check =>
  (v) =>
    typeof v === 'string' && choices.includes(v) ? null : `one of ${choices.map((c) => `'${c}'`).join(', ')}`;
const listOf =
  (item: Check, what: string): Check =>
  (v) =>
    Array.isArray(v) && v.every((x) => item(x) === null) ? null : `a list of ${what}`;
const natInt: Check = (v) => (Number.isInteger(v) && (v as number) >= 0 ? null : 'a non-negative integer');

/** Field -> [check, required]. */
type Shape = Record<string, [Check, boolean]>;

const SHAPES: { [M in RequestMethod]: Shape } = {
  'train/resolve': {
    data: [str, false],
    weights: [str, false],
    configFile: [str, false],
    overrides: [obj, false],
    workspaceRoot: [str, true],
  },
  'train/start': {
    config: [obj, false],
    resumeDir: [str, false],
    resumeOverrides: [obj, false],
    configFile: [str, false],
  },
  'train/cancel': { reason: [str, false] },
  'gpu/check': { refresh: [bool, false] },
  'params/compute': {
    configFile: [str, false],
    settings: [obj, false],
    backbone: [str, false],
    classes: [posInt, false],
    ignoreWorkspaceConfig: [bool, false],
    configText: [str, false],
  },
  'inspect/score': { runDir: [str, true], files: [listOf(str, 'file paths'), true], topK: [posInt, false] },
  'inspect/thumbs': {
    files: [listOf(str, 'file paths'), true],
    size: [posInt, false],
    cacheDir: [str, true],
    format: [oneOf('webp', 'png'), false],
  },
  'inspect/attention': { runDir: [str, true], file: [str, true] },
  'similarity/compute': {
    runDir: [str, true],
    exits: [listOf(natInt, 'exit indices (non-negative integers)'), true],
    perClass: [posInt, false],
    split: [oneOf('train', 'val', 'test'), false],
    seed: [num, false],
  },
  'embeddings/compute': {
    runDir: [str, true],
    perClass: [posInt, false],
    split: [oneOf('train', 'val', 'test'), false],
    seed: [num, false],
    files: [listOf(str, 'file paths'), false],
  },
  'engine/shutdown': {},
};

/** The method names, own keys only: 'toString' or 'constructor' is not a method. */
export function isMethod(m: string): m is RequestMethod {
  return Object.prototype.hasOwnProperty.call(SHAPES, m);
}

/** Throws a ProtocolError 'params-invalid' naming the method and the first bad field. */
export function validateParams(method: RequestMethod, params: unknown): void {
  // `{}` params may arrive as undefined from a client that leaves them out.
  const p = params === undefined ? {} : params;
  if (obj(p) !== null) throw new ProtocolError('params-invalid', `${method}: params must be an object`, 'params');
  const shape = SHAPES[method];
  for (const [k, v] of Object.entries(p as Record<string, unknown>)) {
    if (!Object.prototype.hasOwnProperty.call(shape, k)) {
      // An unset optional field (undefined on the host) is not an error.
      if (v === undefined) continue;
      throw new ProtocolError(
        'params-invalid',
        `${method}: unknown field '${k}' (expected ${Object.keys(shape).join(', ') || 'none'})`,
        k,
      );
    }
  }
  for (const [k, [check, required]] of Object.entries(shape)) {
    const v = (p as Record<string, unknown>)[k];
    if (v === undefined) {
      if (required) throw new ProtocolError('params-invalid', `${method}: field '${k}' is required`, k);
      continue;
    }
    const want = check(v);
    if (want) throw new ProtocolError('params-invalid', `${method}: field '${k}' must be ${want}`, k);
  }
}
