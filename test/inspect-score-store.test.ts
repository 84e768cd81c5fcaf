// Inspect exits' score store on the host (src/extension/panels/scoreStore.ts, no vscode): the
// order images are scored in (on screen first, then the rest), the engine's image-major answers
// kept and re-sent in the same layout, and what the detail view gets.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { ScoreResult } from '../src/engine/explore/types';
import { ScoreStore, TOP_K } from '../src/extension/panels/scoreStore';

const K = 2;

/** An engine answer for `rows` images: conf = image + exit / 10, top-k with k = 2. */
function result(rows: number[], ok: number[]): ScoreResult {
  const m = rows.length;
  const k = 2;
  return {
    files: rows.map((i) => `/i/${i}.png`),
    classes: ['a', 'b'],
    layers: [6, 12],
    gflops: [1, 2],
    ok: Uint8Array.from(ok),
    conf: Float32Array.from({ length: m * K }, (_, x) => rows[Math.floor(x / K)] + (x % K) / 10),
    pred: Int32Array.from({ length: m * K }, (_, x) => x % K),
    topProb: Float32Array.from({ length: m * K * k }, (_, x) => x),
    topClass: Int32Array.from({ length: m * K * k }, (_, x) => x % 2),
    exitTaken: new Int32Array(m),
    skipped: [],
  };
}

test('images on screen are scored first, then the rest in order; a failed chunk is done again', () => {
  const s = new ScoreStore();
  s.reset(10, K, false, false);
  assert.deepEqual(s.take({ first: 4, last: 6 }, 2), [4, 5]);
  assert.deepEqual(s.take({ first: 4, last: 6 }, 2), [6], 'in flight: not taken twice');
  assert.deepEqual(s.take({ first: 4, last: 6 }, 3), [0, 1, 2], 'nothing left on screen: from the start');
  s.release([1, 2]);
  assert.deepEqual(s.take({ first: 0, last: -1 }, 3), [1, 2, 3]);
  assert.equal(s.allDone(), false);
});

test('answers are kept image-major and re-sent in the layout of the protocol', () => {
  const s = new ScoreStore();
  s.reset(5, K, false, false);
  const chunk = s.take({ first: 3, last: 4 }, 2);
  s.put(chunk, result(chunk, [1, 0]));
  assert.equal(s.scored, 1);
  assert.deepEqual(s.doneIndices(), [3, 4]);
  const msg = s.message([4, 3]);
  assert.deepEqual(Array.from(msg.index), [4, 3]);
  assert.deepEqual(Array.from(msg.ok), [0, 1]);
  // Row 1 is image 3: [K] at 1 * K.
  assert.deepEqual(Array.from(msg.conf.subarray(K, 2 * K)), [3, 3.1].map(Math.fround));
  assert.ok(Number.isNaN(msg.conf[0]), 'the unreadable image has no scores');
  assert.equal(msg.k, TOP_K);
  // Image 3 was row 0 of the answer: its top-2 (k = 2) land in the first 2 of TOP_K per exit.
  assert.deepEqual(Array.from(msg.topProb.subarray(K * TOP_K, K * TOP_K + TOP_K)), [0, 1, NaN]);
  assert.deepEqual(Array.from(msg.topProb.subarray(K * TOP_K + TOP_K, 2 * K * TOP_K)), [2, 3, NaN]);
  assert.equal(msg.scored, 1);
  assert.equal(msg.total, 5);
  const d = s.scoresOf(3)!;
  assert.deepEqual(Array.from(d.conf), [3, 3.1].map(Math.fround));
  assert.deepEqual(Array.from(d.pred), [0, 1]);
  assert.equal(d.k, TOP_K);
  assert.equal(d.value, undefined);
  assert.equal(s.scoresOf(4), null, 'unreadable');
  assert.equal(s.scoresOf(0), null, 'not scored yet');
});

test('stored scores (test split): nothing to take, nothing kept; regression keeps values', () => {
  const s = new ScoreStore();
  s.reset(3, K, true, false);
  assert.equal(s.allDone(), true);
  assert.equal(s.scored, 3);
  assert.deepEqual(s.take({ first: 0, last: 2 }, 32), []);
  assert.equal(s.scoresOf(1), null, 'the webview has them from init');

  const r = new ScoreStore();
  r.reset(2, K, false, true);
  const chunk = r.take({ first: 0, last: 1 }, 32);
  r.put(chunk, {
    ...result(chunk, [1, 1]),
    value: Float32Array.from([1, 2, 3, 4]),
    topProb: new Float32Array(0),
    topClass: new Int32Array(0),
  });
  const msg = r.message([1]);
  assert.equal(msg.k, 0);
  assert.deepEqual(Array.from(msg.value!), [3, 4]);
  assert.deepEqual(Array.from(r.scoresOf(0)!.value!), [1, 2]);
});
