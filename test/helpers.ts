// Shared test utilities (deterministic randomness, comparisons).

import { readSafetensors } from '../src/engine/weights/safetensors';

/** Mulberry32: a small seeded PRNG so tests are reproducible. Returns floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The largest absolute difference between the tensors of two safetensors files (same names). */
export function maxTensorDiff(fileA: string, fileB: string): number {
  const a = readSafetensors(fileA);
  const b = readSafetensors(fileB);
  let m = 0;
  for (const [name, t] of a) {
    const u = b.get(name);
    if (!u) throw new Error(`${name} is in ${fileA} but not in ${fileB}`);
    m = Math.max(m, maxAbsDiff(t.data as Float32Array, u.data as Float32Array));
  }
  return m;
}
