// Test-only hooks of the Inspect exits webview: the actions of the host's met.inspect.test
// command (the integration suite, test/vscode/suite/inspect.test.ts and regression.test.ts),
// run through the same code paths as a user's input (the slider's input event, keydown on the
// grid, the Save button's click) plus a measured scroll. Bundled only into the test build
// (dist/webview/inspect-test.js: esbuild.mjs defines MET_TEST_HOOKS); the production bundle
// (dist/webview/inspect.js) has none of this.

import type { InspectState, Perf, TestAction } from './protocol';

/** What the hooks drive in main.ts. */
export interface TestUi {
  slider: HTMLInputElement;
  grid: HTMLElement;
  saveBtn: HTMLButtonElement;
  scroller: HTMLElement;
  /** Row height in CSS pixels. */
  rowHeight: number;
  state(): InspectState;
  setActive(row: number, col: number): void;
  select(row: number): void;
  /** The longest of main.ts's own renders since the reset (ms). */
  resetWorstRender(): void;
  worstRender(): number;
  /** Timings posted with each 'state' (the scroll test fills perf.scroll). */
  perf: Perf;
  postState(): void;
}

export interface TestHooks {
  /** A test action; `loaded`: the images have arrived (before that, it waits for afterInit). */
  onTest(a: TestAction, loaded: boolean): void;
  /** The images arrived: run the actions that came before them. */
  afterInit(): void;
}

export function installTestHooks(ui: TestUi): TestHooks {
  /** Test actions that came before the init message, run right after it. */
  const pending: TestAction[] = [];
  const run = (a: TestAction): void => {
    switch (a.kind) {
      case 'slider':
        ui.slider.value = String(a.index);
        ui.slider.dispatchEvent(new Event('input'));
        break;
      case 'key':
        ui.grid.focus();
        ui.grid.dispatchEvent(new KeyboardEvent('keydown', { key: a.key, bubbles: true, cancelable: true }));
        break;
      case 'select':
        ui.setActive(a.row, ui.state().col ?? 0);
        ui.select(a.row);
        break;
      case 'save':
        ui.saveBtn.click();
        break;
      case 'explain': {
        // Explain's own controls, clicked (views/explain.ts): the button, then a radio button.
        const toggle = document.getElementById('explain-toggle') as HTMLButtonElement;
        if (a.open !== undefined && (toggle.getAttribute('aria-expanded') === 'true') !== a.open) toggle.click();
        if (a.mode) document.querySelector<HTMLInputElement>(`input[name="explain-mode"][value="${a.mode}"]`)?.click();
        break;
      }
      case 'embeddings': {
        // Embeddings' own controls (views/embeddings.ts): its summary clicked, a key in the first plot.
        const box = document.getElementById('embeddings') as HTMLDetailsElement;
        if (a.open !== undefined && box.open !== a.open) box.querySelector('summary')!.click();
        const plot = box.querySelector<SVGSVGElement>('svg.emb-plot');
        if (a.key && plot) {
          plot.focus();
          plot.dispatchEvent(new KeyboardEvent('keydown', { key: a.key, bubbles: true, cancelable: true }));
        }
        break;
      }
      case 'scroll':
        void scrollTest(ui, a.ms, a.rowsPerFrame);
        break;
    }
  };
  return {
    // A test may act as soon as the panel opens: before the images arrive there is nothing to select.
    onTest: (a, loaded) => (loaded ? run(a) : void pending.push(a)),
    afterInit: () => pending.splice(0).forEach(run),
  };
}

/**
 * Scrolls the grid by rowsPerFrame rows each animation frame (back to the top at the end) for
 * `ms`, and measures what a user would feel: the longest gap between animation frames, and the
 * longest lateness of a 10 ms interval timer (event-loop stalls: long tasks block both).
 */
async function scrollTest(ui: TestUi, ms: number, rowsPerFrame: number): Promise<void> {
  const { scroller } = ui;
  const t0 = performance.now();
  let last = t0;
  let frames = 0;
  let worstFrame = 0;
  let worstLag = 0;
  let moved = 0;
  let expected = t0 + 10;
  ui.resetWorstRender();
  // Long tasks of this document (ours: rendering, message handling), as Chromium reports them.
  const long: number[] = [];
  let obs: PerformanceObserver | undefined;
  try {
    obs = new PerformanceObserver((l) => l.getEntries().forEach((e) => long.push(e.duration)));
    obs.observe({ type: 'longtask' });
  } catch {
    /* not supported */
  }
  const iv = setInterval(() => {
    const now = performance.now();
    worstLag = Math.max(worstLag, now - expected);
    expected = now + 10;
  }, 10);
  await new Promise<void>((resolve) => {
    // A hidden document draws no frames: give up rather than hang.
    const guard = setTimeout(resolve, ms + 5000);
    const frame = (now: number) => {
      frames++;
      worstFrame = Math.max(worstFrame, now - last);
      last = now;
      const max = scroller.scrollHeight - scroller.clientHeight;
      const next = scroller.scrollTop + rowsPerFrame * ui.rowHeight;
      scroller.scrollTop = next > max ? 0 : next;
      moved += rowsPerFrame;
      if (now - t0 < ms) requestAnimationFrame(frame);
      else {
        clearTimeout(guard);
        resolve();
      }
    };
    requestAnimationFrame(frame);
  });
  clearInterval(iv);
  obs?.disconnect();
  const total = performance.now() - t0;
  ui.perf.scroll = {
    ms: total,
    frames,
    worstFrameMs: worstFrame,
    worstLagMs: worstLag,
    meanFrameMs: frames ? total / frames : 0,
    rowsMoved: moved,
    finalTop: scroller.scrollTop,
    worstRenderMs: ui.worstRender(),
    longTasks: long.length,
    worstLongTaskMs: long.length ? Math.max(...long) : 0,
  };
  ui.postState();
}
