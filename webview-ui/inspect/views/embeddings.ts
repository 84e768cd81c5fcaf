// Inspect exits, Embeddings per exit: the run's class-balanced sample at every exit, each exit's
// head inputs on their first two principal axes (the engine's 'embeddings/compute'), drawn by the
// shared view (../../common/embeddings.ts) with the selected image highlighted.
//
// Computed on demand: when the section (#embeddings, a <details>) is first opened, the webview
// asks the host, which keeps the result per run (src/extension/panels/inspectEmbeddings.ts), so a
// rebuilt webview or a reopened section gets it at once. The selected image: highlighted where it
// is in the sample; otherwise the host asks the engine to place it on the sample's axes (the
// `files` of 'embeddings/compute': the axes do not move) and sends the result with it as `extra`.
// Enter or a click on a point selects that image in the grid when the grid holds it.

import { renderEmbeddings, type EmbeddingsView } from '../../common/embeddings';
import { $ } from '../../common/vscode';
import { model, state, vscode } from '../context';
import type { EmbeddingsMessage, RenderedSnapshot } from '../protocol';
import type { EmbeddingsResult } from '../../../src/engine/explore/types';

type Status = RenderedSnapshot['embeddings']['status'];

// esbuild.mjs: true in the test build of the script (dist/webview/inspect-test.js).
declare const MET_TEST_HOOKS: boolean;

let result: EmbeddingsResult | null = null;
let view: EmbeddingsView | null = null;
let status: Status = 'closed';
let error: string | undefined;
/** The image index of the request in flight (undefined: the sample alone; -2: none), so that a
 *  reply for an older selection is not taken for the current one's. */
let asked: number | undefined = -2;
let ui: { select(i: number): void; changed(): void } = { select: () => undefined, changed: () => undefined };

const box = () => $<HTMLDetailsElement>('embeddings');

/** Wires the section: `select` selects an image of the grid, `changed` schedules a state post. */
export function initEmbeddings(select: (i: number) => void, changed: () => void): void {
  ui = { select, changed };
  box().addEventListener('toggle', () => {
    state.embeddings = box().open;
    if (box().open) ensure();
    else status = 'closed';
    render();
    ui.changed();
  });
}

/** After 'init': a regression run has no classes (no section); a section left open asks again. */
export function embeddingsAfterInit(): void {
  // A new 'init' (the run's files changed): what was shown is asked again (the host keeps it while it holds).
  result = null;
  view?.dispose();
  view = null;
  status = 'closed';
  asked = -2;
  const reg = model.reg;
  box().hidden = reg;
  if (reg) return;
  if (state.embeddings && !box().open)
    box().open = true; // its toggle event asks
  else if (box().open) ensure();
}

const selectedFile = (): string | undefined =>
  model.init && state.selected !== undefined ? model.init.files[state.selected] : undefined;
const has = (r: EmbeddingsResult, f: string) => r.sample.some((x) => x.file === f) || r.extra.some((x) => x.file === f);

/** Asks the host for the embeddings (with the selected image placed on them) unless they are here. */
function ensure(): void {
  if (!model.init) return;
  const f = selectedFile();
  if (result && (!f || has(result, f))) {
    status = 'ready';
    return;
  }
  const index = f ? state.selected : undefined;
  if (status === 'computing' && asked === index) return;
  asked = index;
  status = 'computing';
  error = undefined;
  vscode.postMessage({ type: 'embeddings', ...(index !== undefined ? { index } : {}) });
}

/** The selection changed: move the highlight, or ask for the image to be placed. */
export function embeddingsSelected(): void {
  if (!box().open || model.reg) return;
  ensure();
  render();
}

export function onEmbeddings(m: EmbeddingsMessage): void {
  if ('error' in m) {
    status = 'error';
    error = m.error;
  } else {
    result = m.result;
    const f = selectedFile();
    // Ready unless this answer is for an older selection and the current one is still missing.
    status = f && !has(result, f) && asked !== m.index ? 'computing' : 'ready';
    if (status === 'ready') asked = -2;
    view?.dispose();
    view = null;
  }
  render();
  ui.changed();
}

function render(): void {
  const note = $('emb-status');
  const f = selectedFile();
  if (!box().open) {
    note.textContent = '';
    return;
  }
  if (status === 'error') {
    note.textContent = `Embeddings: ${error ?? 'failed'}`;
    note.classList.add('error');
    return;
  }
  note.classList.remove('error');
  if (!result) {
    note.textContent = 'Computing the embeddings: the sample through the network, a PCA per exit…';
    return;
  }
  if (!view)
    view = renderEmbeddings($('emb-view'), result, {
      highlightFile: f,
      onPick: pick,
      onActive: () => ui.changed(),
      nameOf: (file) => {
        const i = model.init?.files.indexOf(file) ?? -1;
        return i >= 0 ? model.init!.names[i] : file.split(/[\\/]/).slice(-2).join('/');
      },
    });
  else view.setHighlight(f);
  note.textContent =
    status === 'computing'
      ? 'Placing the selected image on the sample’s axes…'
      : f === undefined
        ? 'Select an image to highlight it at every exit.'
        : result.extra.some((x) => x.file === f)
          ? 'The selected image is not in the sample: it is placed on the sample’s axes (outlined), which it does not move.'
          : 'The selected image is in the sample: highlighted at every exit.';
}

/** A point picked in a plot: select that image when the grid holds it. */
function pick(file: string): void {
  const i = model.init?.files.indexOf(file) ?? -1;
  if (i >= 0) ui.select(i);
  else $('emb-status').textContent = `${file} is not among this panel's images (the sample is from the run's split).`;
}

export function embeddingsSnapshot(): RenderedSnapshot['embeddings'] {
  return {
    open: !!model.init && box().open,
    status: box().open ? status : 'closed',
    ...(error && status === 'error' ? { error } : {}),
    ...(result ? { split: result.split, perClass: result.perClass, seed: result.seed } : {}),
    note: $('emb-status').textContent ?? '',
    // Every point's position only in the test build: 2 numbers per point and exit on every state.
    view: view && box().open ? view.snapshot({ points: MET_TEST_HOOKS }) : null,
  };
}
