// Checks shared by the exploration-panel tests (explore-*.test.ts).

import * as assert from 'node:assert/strict';
import type { RunPrediction } from '../src/cli/predict';
import type { ScoreResult } from '../src/engine/explore/types';

/** Every number of `res` for the files `met predict` scored, checked against its JSON. */
export function assertSameAsPredict(res: ScoreResult, cli: RunPrediction[]): void {
  const K = res.layers.length;
  const k = res.topProb.length / (res.files.length * K);
  const at = new Map(res.files.map((f, i) => [f, i]));
  for (const x of cli) {
    const i = at.get(x.file)!;
    assert.equal(res.ok[i], 1, x.file);
    x.exits.forEach((e, j) => {
      // Float32 in both; JSON carries a float32's double exactly.
      assert.equal(res.conf[i * K + j], e.confidence, `${x.file} exit ${j + 1}`);
      assert.equal(res.pred[i * K + j], e.class);
      assert.equal(res.classes[res.pred[i * K + j]], e.label);
      assert.equal(res.layers[j], e.layer);
      // Top-k: the first is the prediction; probabilities descending.
      assert.equal(res.topClass[(i * K + j) * k], e.class);
      assert.equal(res.topProb[(i * K + j) * k], e.confidence);
      for (let t = 1; t < k; t++) assert.ok(res.topProb[(i * K + j) * k + t] <= res.topProb[(i * K + j) * k + t - 1]);
    });
    assert.equal(res.exitTaken[i] + 1, x.exit, `${x.file}: exit taken`);
  }
}
