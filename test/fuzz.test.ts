// Fuzzing the untrusted-input parsers (pickle, zip, .pth, safetensors, npy/npz, targets files,
// met.config.json) with fast-check: random and mutated inputs must parse or fail with a named
// error, each in bounded time and memory. This is the short budget that runs in `npm test`
// (a fixed seed, so a failure reproduces); scripts/fuzz.ts runs the long one.

import { test, describe } from 'node:test';
import fc from 'fast-check';
import { type ParseStats, fuzzProperty, fuzzTargets } from './fixtures/weights/fuzz-targets';

/** Inputs per target: ten targets x 1000 take ~2 s on a 2-core machine. */
const RUNS = 1000;
const SEED = 20261207;

describe('fuzz: parsers fail only with named errors, in bounded time and memory', () => {
  for (const t of fuzzTargets()) {
    test(t.name, () => {
      const stats: ParseStats = { runs: 0, maxMs: 0, maxBytes: 0, slowestSize: 0 };
      fc.assert(fuzzProperty(t, stats), { numRuns: RUNS, seed: SEED });
    });
  }
});
