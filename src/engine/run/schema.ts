// Validation and the JSON Schema of a run's settings, both walking the settings table
// (engine/settings.ts): validation names the field at fault; the schema is the committed
// schemas/met.config.schema.json that the editor uses for completion and validation.

import { UserError } from '../tensor';
import { TRAIN_DEFAULTS, type TrainConfig } from './config';
import { type Field, FIELDS, flagOf } from '../settings';

function check(f: Field, v: unknown, where: string): unknown {
  const bad = (what: string) =>
    new UserError(`${where}: field '${f.key}' must be ${what}, got ${JSON.stringify(v)}`, 'config-invalid');
  const inRange = (n: number) => (f.min === undefined || n >= f.min) && (f.max === undefined || n <= f.max);
  const range = f.min !== undefined || f.max !== undefined ? ` in [${f.min ?? '-inf'}, ${f.max ?? 'inf'}]` : '';
  switch (f.kind) {
    case 'string':
    case 'path':
      if (typeof v !== 'string' || !v) throw bad('a non-empty string');
      return v;
    case 'enum':
      if (typeof v !== 'string' || !f.choices!.includes(v))
        throw bad(`one of ${f.choices!.map((c) => `"${c}"`).join(', ')}`);
      return v;
    case 'enumList': {
      // "a,b" (a flag) is the list [a, b]; a single name stays a string.
      const list = typeof v === 'string' && v.includes(',') ? v.split(',').map((x) => x.trim()) : v;
      const ok = (x: unknown) => typeof x === 'string' && f.choices!.includes(x);
      if (Array.isArray(list) ? list.length > 0 && list.every(ok) : ok(list)) return list;
      throw bad(`one of ${f.choices!.map((c) => `"${c}"`).join(', ')}, or a list of them`);
    }
    case 'bool':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || !inRange(v)) throw bad(`an integer${range}`);
      return v;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || !inRange(v)) throw bad(`a number${range}`);
      return v;
    case 'ints':
    case 'numbers': {
      const ok =
        Array.isArray(v) &&
        v.length > 0 &&
        v.every(
          (x) =>
            typeof x === 'number' && Number.isFinite(x) && (f.kind === 'numbers' || Number.isInteger(x)) && inRange(x),
        );
      if (!ok || (f.length !== undefined && (v as unknown[]).length !== f.length))
        throw bad(`${f.length ? `${f.length} ` : 'a list of '}${f.kind === 'ints' ? 'integers' : 'numbers'}${range}`);
      return v;
    }
  }
}

/** Validates a parsed config object (unknown keys and wrong types are errors naming the field). */
export function validateConfig(obj: unknown, where: string): Partial<TrainConfig> {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj))
    throw new UserError(`${where}: the config must be a JSON object`, 'config-invalid');
  const out: Record<string, unknown> = {};
  const byKey = new Map(FIELDS.map((f) => [f.key as string, f]));
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (k === '$schema') continue;
    const f = byKey.get(k);
    if (!f) {
      const near = FIELDS.map((x) => x.key as string).find(
        (x) => x.toLowerCase() === k.toLowerCase().replace(/[-_]/g, ''),
      );
      throw new UserError(
        `${where}: unknown field '${k}'${near ? ` (did you mean '${near}'?)` : ''}`,
        'config-invalid',
      );
    }
    out[k] = check(f, v, where);
  }
  if (out.split) {
    const s = out.split as number[];
    if (Math.abs(s[0] + s[1] + s[2] - 100) > 1e-9)
      throw new UserError(`${where}: field 'split' must add up to 100, got ${s.join(' + ')}`, 'config-invalid');
  }
  return out as Partial<TrainConfig>;
}

/** Defaults, then the config file, then flags; checks required fields. */
export function resolveConfig(file: Partial<TrainConfig>, flags: Partial<TrainConfig>): TrainConfig {
  const c = { ...TRAIN_DEFAULTS, ...file, ...flags } as TrainConfig;
  for (const f of FIELDS)
    if (f.required && c[f.key] === undefined)
      throw new UserError(
        `'${f.key}' is required (--${flagOf(f)} or "${f.key}" in met.config.json)`,
        'setting-missing',
      );
  validateConfig(c, 'settings');
  return c;
}

/** The JSON Schema of met.config.json (draft-07, what VS Code's JSON language service speaks). */
export function jsonSchema(): Record<string, unknown> {
  const props: Record<string, unknown> = { $schema: { type: 'string' } };
  for (const f of FIELDS) {
    const p: Record<string, unknown> = { description: f.help };
    const def = (TRAIN_DEFAULTS as Record<string, unknown>)[f.key];
    if (def !== undefined) p.default = def;
    switch (f.kind) {
      case 'string':
      case 'path':
        p.type = 'string';
        break;
      case 'enum':
        p.enum = [...f.choices!];
        break;
      case 'enumList':
        p.anyOf = [{ enum: [...f.choices!] }, { type: 'array', items: { enum: [...f.choices!] }, minItems: 1 }];
        break;
      case 'bool':
        p.type = 'boolean';
        break;
      case 'int':
      case 'number':
        p.type = f.kind === 'int' ? 'integer' : 'number';
        if (f.min !== undefined) p.minimum = f.min;
        if (f.max !== undefined) p.maximum = f.max;
        break;
      case 'ints':
      case 'numbers': {
        const item: Record<string, unknown> = { type: f.kind === 'ints' ? 'integer' : 'number' };
        if (f.min !== undefined) item.minimum = f.min;
        if (f.max !== undefined) item.maximum = f.max;
        p.type = 'array';
        p.items = item;
        p.minItems = f.length ?? 1;
        if (f.length) p.maxItems = f.length;
        break;
      }
    }
    props[f.key] = p;
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://met-tools.invalid/met.config.schema.json',
    title: 'MET fine-tuning configuration (met.config.json)',
    type: 'object',
    additionalProperties: false,
    required: FIELDS.filter((f) => f.required).map((f) => f.key),
    properties: props,
  };
}
