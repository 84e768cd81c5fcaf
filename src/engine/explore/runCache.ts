// Runs kept loaded between requests of the exploration panels. The Inspect exits grid asks for
// scores a screenful at a time as the user scrolls, and building a run's segment sessions costs
// far more than scoring 32 images, so a run stays loaded until its files change:
//
//   trainable.safetensors or config.json changed (retrained, resumed)  -> everything reloaded
//   thresholds.json changed (budget slider saved, `met eval` refitted) -> thresholds re-read
//
// Work on one run is serialised: onnxruntime-node runs a session synchronously on the calling
// thread, so two requests interleaving their batches would gain nothing and hold two batches of
// activations at once; in order, each request's batches stay together.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunPredictor } from '../run/runPredictor';
import type { SessionOptions } from '../runtime/session';
import { RUN_FILE } from '../run/runFolder';

/** What identifies a version of a file: size and modification time (absent: missing). */
function stamp(file: string): string {
  try {
    const st = fs.statSync(file);
    // The inode too: run files are replaced atomically (write a temp file, rename), and two saves
    // of thresholds.json within one tick of the kernel's coarse file clock can leave the same size
    // and mtime; the renamed-in file always has a new inode (it existed beside the old one).
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

interface Entry {
  modelKey: string;
  thresholdsKey: string;
  /** Opening (or opened) predictor; a failed open is not cached. */
  predictor: Promise<RunPredictor>;
  /** Tail of this run's work queue. */
  queue: Promise<unknown>;
  /** Per-run extras built on demand (e.g. the similarity panel's feature session), released with it. */
  extras: Map<string, { value: Promise<unknown>; release: (v: unknown) => Promise<void> }>;
}

export interface LoadedRun {
  predictor: RunPredictor;
  /** A value built once per loaded run (rebuilt when the run's model files change). */
  extra<T>(key: string, make: (p: RunPredictor) => Promise<T>, release: (v: T) => Promise<void>): Promise<T>;
}

export class RunCache {
  private readonly entries = new Map<string, Entry>();
  /** Times a run was (re)loaded, for tests and the log. */
  loads = 0;

  /** `maxRuns`: runs kept loaded at once (least recently used ones are released first). */
  constructor(
    private readonly so: SessionOptions = {},
    private readonly maxRuns = 3,
  ) {}

  /**
   * Runs `work` on the loaded run `runDir`, after the work queued before it on that run. The
   * run is (re)loaded first when its files changed since it was loaded.
   */
  async with<T>(runDir: string, work: (run: LoadedRun) => Promise<T>): Promise<T> {
    const dir = path.resolve(runDir);
    const modelKey = `${stamp(path.join(dir, RUN_FILE.trainable))}|${stamp(path.join(dir, RUN_FILE.config))}`;
    const thresholdsKey = stamp(path.join(dir, RUN_FILE.thresholds));
    let e = this.entries.get(dir);
    if (e && e.modelKey !== modelKey) {
      this.entries.delete(dir);
      void this.retire(e);
      e = undefined;
    }
    if (!e) {
      this.loads++;
      const created: Entry = {
        modelKey,
        thresholdsKey,
        predictor: RunPredictor.open(dir, this.so),
        queue: Promise.resolve(),
        extras: new Map(),
      };
      // A run that cannot be opened (no trainable.safetensors yet) is tried again next time.
      created.predictor.catch(() => {
        if (this.entries.get(dir) === created) this.entries.delete(dir);
      });
      this.entries.set(dir, created);
      e = created;
      for (const [d, old] of this.entries) {
        if (this.entries.size <= this.maxRuns) break;
        this.entries.delete(d);
        void this.retire(old);
      }
    } else {
      // Most recently used last (Map order), so the eviction above takes the oldest.
      this.entries.delete(dir);
      this.entries.set(dir, e);
    }
    const entry = e;
    const job = entry.queue.then(async () => {
      const predictor = await entry.predictor;
      // Checked in the queue, not before it: a save between enqueueing and running counts.
      const tk = stamp(path.join(dir, RUN_FILE.thresholds));
      if (tk !== entry.thresholdsKey) {
        predictor.reloadThresholds();
        entry.thresholdsKey = tk;
      }
      return work({
        predictor,
        extra: <X>(
          key: string,
          make: (p: RunPredictor) => Promise<X>,
          release: (v: X) => Promise<void>,
        ): Promise<X> => {
          let x = entry.extras.get(key);
          if (!x) {
            const value = make(predictor);
            x = { value, release: release as (v: unknown) => Promise<void> };
            entry.extras.set(key, x);
            value.catch(() => entry.extras.delete(key));
          }
          return x.value as Promise<X>;
        },
      });
    });
    entry.queue = job.catch(() => undefined);
    return job;
  }

  /** Releases a replaced run's sessions once the work queued on it has finished. */
  private retire(e: Entry): Promise<void> {
    return e.queue.then(async () => {
      try {
        const p = await e.predictor;
        for (const x of e.extras.values()) await x.value.then(x.release, () => undefined);
        await p.release();
      } catch {
        // It never opened: nothing to release.
      }
    });
  }

  /** Releases every loaded run (engine shutdown). */
  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => this.retire(e)));
  }

  get size(): number {
    return this.entries.size;
  }
}
