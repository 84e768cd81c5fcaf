// Inspect exits, the thumbnail pump: thumbnails for the rows on screen, then a little ahead and
// behind, one engine request at a time ('inspect/thumbs'); never the whole folder. One pump per
// loaded source: a panel that loads other images makes a new one and drops this one. No
// `vscode` here: the panel turns the paths into webview URIs.

import type { VisibleRows } from './scoreStore';

/** Thumbnails per request, and how far beyond the screen they are fetched ahead. */
export const THUMB_CHUNK = 48;
export const THUMB_AHEAD = 40;

export interface ThumbIo {
  /** The engine's thumbnails of these files (null: unreadable), in order. */
  fetch(files: string[]): Promise<(string | null)[]>;
  /** These images have their thumbnails now (pathOf). */
  deliver(index: number[]): void;
  fail(message: string): void;
  /** The panel still shows these images (not closed, not reloaded). */
  alive(): boolean;
  /** Its webview is ready (a hidden one is not: the pump waits for 'visible' again). */
  ready(): boolean;
}

export class ThumbPump {
  /** [n] 0 none, 1 in flight, 2 done. */
  private readonly state: Uint8Array;
  private readonly paths: (string | null)[];
  private running = false;
  /** The rows on screen, as the webview last said. */
  visible: VisibleRows = { first: 0, last: -1 };

  constructor(
    private readonly files: string[],
    private readonly io: ThumbIo,
  ) {
    this.state = new Uint8Array(files.length);
    this.paths = new Array<string | null>(files.length).fill(null);
  }

  pathOf(i: number): string | null {
    return this.paths[i];
  }

  /** Images whose thumbnails are here (to send again to a rebuilt webview). */
  doneIndices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.state.length; i++) if (this.state[i] === 2) out.push(i);
    return out;
  }

  /** The next images: on screen, else ahead of it, else behind it. */
  private take(): number[] {
    const n = this.files.length;
    const { first, last } = this.visible;
    const out: number[] = [];
    const take = (a: number, b: number) => {
      for (let i = Math.max(0, a); i <= Math.min(n - 1, b) && out.length < THUMB_CHUNK; i++)
        if (!this.state[i]) out.push(i);
    };
    take(first, last);
    if (!out.length) take(last + 1, last + THUMB_AHEAD);
    if (!out.length) take(first - THUMB_AHEAD, first - 1);
    return out;
  }

  /** Fetches until the rows around the screen have thumbnails; one loop at a time. */
  async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        if (!this.io.alive() || !this.io.ready()) return;
        const out = this.take();
        if (!out.length) return;
        out.forEach((i) => (this.state[i] = 1));
        let thumbs: (string | null)[];
        try {
          thumbs = await this.io.fetch(out.map((i) => this.files[i]));
        } catch (e) {
          out.forEach((i) => (this.state[i] = 0));
          this.io.fail(`thumbnails failed: ${(e as Error).message}`);
          return;
        }
        if (!this.io.alive()) return;
        out.forEach((i, row) => {
          this.state[i] = 2;
          this.paths[i] = thumbs[row];
        });
        this.io.deliver(out);
      }
    } finally {
      this.running = false;
    }
  }
}
