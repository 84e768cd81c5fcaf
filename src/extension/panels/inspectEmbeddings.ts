// Inspect exits, embeddings per exit: the engine's 'embeddings/compute' results, kept per run on
// the host, so a rebuilt webview (hidden and shown), a reopened section or another panel on the
// same run gets them without the engine running the sample again.
//
//   per run:    the sample's result (sample, coords per exit, explained variance)
//   per image:  the result with that image placed on the sample's axes (`extra`), for a selected
//               image that is not in the sample (the 32 most recent, across runs)
//
// Keyed by the run's model files (trainable.safetensors, config.json: size and mtime), as the
// engine's own run cache is: a retrained or resumed run is computed again. A failed request is
// not kept.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EmbeddingsResult } from '../../engine/explore/types';
import { RUN_FILE } from '../../engine/run/runFolder';
import { norm } from '../runFiles';

/** Extra-image results kept (one engine forward of one image each). */
const MAX_EXTRA = 32;

type Request = (p: { runDir: string; files?: string[] }) => Promise<EmbeddingsResult>;

function stamp(runDir: string): string {
  return [RUN_FILE.trainable, RUN_FILE.config]
    .map((f) => {
      try {
        const st = fs.statSync(path.join(runDir, f));
        return `${st.ino}:${st.size}:${st.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

export class EmbeddingsCache {
  private readonly base = new Map<string, { key: string; result: Promise<EmbeddingsResult> }>();
  private readonly extra = new Map<string, Promise<EmbeddingsResult>>();

  /** `request`: the engine's 'embeddings/compute' (tests may pass another). */
  constructor(private readonly request: Request) {}

  /**
   * The run's embeddings; with `file`, one that also has `file` on the sample's axes (the sample's
   * own result when `file` is in the sample).
   */
  async get(runDir: string, file?: string): Promise<EmbeddingsResult> {
    const dir = norm(runDir);
    const key = stamp(dir);
    let b = this.base.get(dir);
    if (!b || b.key !== key) {
      const result = this.request({ runDir: dir });
      b = { key, result };
      this.base.set(dir, b);
      const mine = b;
      result.catch(() => {
        if (this.base.get(dir) === mine) this.base.delete(dir);
      });
    }
    const res = await b.result;
    if (file === undefined || res.sample.some((x) => x.file === file)) return res;
    const k = `${key}\n${dir}\n${file}`;
    let x = this.extra.get(k);
    if (!x) {
      x = this.request({ runDir: dir, files: [file] });
      this.extra.set(k, x);
      const mine = x;
      x.catch(() => {
        if (this.extra.get(k) === mine) this.extra.delete(k);
      });
      while (this.extra.size > MAX_EXTRA) this.extra.delete(this.extra.keys().next().value!);
    } else {
      // Most recently used last.
      this.extra.delete(k);
      this.extra.set(k, x);
    }
    return x;
  }
}
