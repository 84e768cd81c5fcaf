// Seeded randomness for the data pipeline: dataset splits, epoch order and augmentation.
// Everything random is a pure function of (seed, epoch, step), never of Math.random or of
// state carried across steps, so a run resumed at (epoch, step) draws exactly the batches an
// uninterrupted run would have drawn.

/**
 * Folds a safe integer (possibly negative or above 2^32, e.g. seed * 1000003 + epoch) into 32
 * bits, using the high word too so that large seeds differing only above bit 31 stay distinct.
 * Throws RangeError for anything else: a fractional or NaN seed is a caller bug, and silently
 * truncating it would make two "different" seeds give the same run.
 */
export function seed32(seed: number): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
}

/** MurmurHash3's 32-bit finaliser: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Order-sensitive 32-bit hash of integers. Used to derive independent streams, e.g.
 * (seed, epoch, step): mulberry32 seeded with neighbouring integers gives correlated first
 * draws, hashing first decorrelates them.
 */
export function hashInts(...parts: number[]): number {
  let h = 0x2545f491;
  for (let i = 0; i < parts.length; i++) {
    const k = fmix32((seed32(parts[i]) + Math.imul(0x9e3779b9, i + 1)) >>> 0);
    h = fmix32((Math.imul(h ^ k, 0x01000193) + 0x7f4a7c15) >>> 0);
  }
  return h;
}

/** 32-bit FNV-1a of the string's UTF-8 bytes (same value on every platform and locale). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/**
 * Mulberry32: a small, fast PRNG with a 32-bit state; floats in [0, 1). Plenty for shuffling
 * and augmentation parameters, and trivially reproducible in any language.
 */
export function mulberry32(seed: number): () => number {
  let a = seed32(seed);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle of `xs` in place with `rng`; returns `xs`. */
export function shuffleInPlace<T>(xs: T[], rng: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = xs[i];
    xs[i] = xs[j];
    xs[j] = t;
  }
  return xs;
}

/** A shuffled copy of `xs`, a pure function of (xs, seed). */
export function shuffled<T>(xs: readonly T[], seed: number): T[] {
  return shuffleInPlace(xs.slice(), mulberry32(seed));
}

/**
 * The training order for `epoch`: shuffled(samples, seed * 1000003 + epoch). The formula is
 * part of the checkpoint contract (a resumed run must recompute the same order), so it is
 * spelled out rather than hidden behind a hash. 1000003 is prime and larger than any epoch
 * count, so (seed, epoch) pairs do not collide.
 */
export function epochOrder<T>(samples: readonly T[], seed: number, epoch: number): T[] {
  return shuffled(samples, seed * 1000003 + epoch);
}

/**
 * The random stream for the augmentation of one training step. Depends only on
 * (seed, epoch, step), so resuming at a step replays its exact crops and flips.
 */
export function stepRng(seed: number, epoch: number, step: number): () => number {
  return mulberry32(hashInts(seed, epoch, step));
}
