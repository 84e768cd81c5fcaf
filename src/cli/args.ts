// A small, strict argument parser: unknown flags and missing or malformed values are errors
// that name the flag, so typos never silently fall back to defaults.

import { UserError } from '../engine/tensor';

export type FlagKind = 'string' | 'int' | 'number' | 'bool' | 'numbers' | 'ints';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  choices?: readonly string[];
  /** An older name of another flag: its value is stored under that flag, and --help lists it there. */
  aliasOf?: string;
}

export type Parsed = { _: string[] } & Record<string, unknown>;

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, command: string): Parsed {
  const out: Parsed = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out._.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      out._.push(a);
      continue;
    }
    let key = a.slice(2);
    let value: string | undefined;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    }
    const s = spec[key];
    if (!s) throw new UserError(`met ${command}: unknown option --${key} (see 'met ${command} --help')`);
    if (s.kind === 'bool') {
      out[s.aliasOf ?? key] = value === undefined ? true : !['0', 'false', 'no'].includes(value);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UserError(`met ${command}: --${key} needs a value`);
      value = argv[++i];
    }
    out[s.aliasOf ?? key] = convert(command, key, s, value);
  }
  return out;
}

function convert(command: string, key: string, s: FlagSpec, v: string): unknown {
  const bad = (what: string) => new UserError(`met ${command}: --${key} expects ${what}, got '${v}'`);
  switch (s.kind) {
    case 'string':
      if (s.choices && !s.choices.includes(v)) throw bad(`one of ${s.choices.join(', ')}`);
      return v;
    case 'int': {
      const n = Number(v);
      if (!Number.isInteger(n)) throw bad('an integer');
      return n;
    }
    case 'number': {
      const n = Number(v);
      if (!Number.isFinite(n)) throw bad('a number');
      return n;
    }
    case 'numbers':
    case 'ints': {
      const parts = v
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x.length);
      const nums = parts.map(Number);
      if (!nums.length || nums.some((n) => !Number.isFinite(n) || (s.kind === 'ints' && !Number.isInteger(n))))
        throw bad(s.kind === 'ints' ? 'comma-separated integers' : 'comma-separated numbers');
      return nums;
    }
    default:
      return v;
  }
}

export function usage(command: string, synopsis: string, spec: Record<string, FlagSpec>): string {
  const lines = [`usage: met ${command} ${synopsis}`, '', 'options:'];
  const aliases = (k: string) =>
    Object.entries(spec)
      .filter(([, s]) => s.aliasOf === k)
      .map(([a]) => `--${a}`);
  for (const [k, s] of Object.entries(spec)) {
    if (s.aliasOf) continue;
    const also = aliases(k);
    const arg =
      s.kind === 'bool'
        ? ''
        : s.choices
          ? ` ${s.choices.join('|')}`
          : ` ${s.kind === 'numbers' ? 'a,b,c' : s.kind.toUpperCase()}`;
    lines.push(`  --${(k + arg).padEnd(34)} ${s.help}${also.length ? ` (also ${also.join(', ')})` : ''}`);
  }
  return lines.join('\n');
}
