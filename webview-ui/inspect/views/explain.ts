// Inspect exits, Explain: for the selected image, where each exit's token attends over the patch
// grid (src/engine/explore/attention.ts computes the maps: 'last', its attention at its own exit
// layer averaged over heads; 'rollout', the attention rollout through layers 1..l_j), drawn over
// the image the network saw (resized and cropped as the run preprocesses it).
//
// Asked of the host once per image, when Explain is open on it (the engine runs the network for
// that one image), and kept for the life of this document; an error is kept until Explain is
// closed and opened again (that asks again).
//
// Colours: the maps use viridis, a perceptually ordered scale (lightness rises monotonically, so
// more attention always reads as brighter, in colour and in grey, and for red-green colour
// blindness). Not the theme's colours: the overlay sits on the image, never on the theme's
// background, and a theme's chart colour mixed into a photo is not ordered. The image under it is
// drawn in grey, so every colour on the map belongs to the scale; the overlay's opacity rises
// with the value (0.3 at zero to 0.85 at the map's peak), so low-attention patches still show
// the image. Everything around the maps (frame, text, legend labels, focus) takes the theme's
// variables (inspect.css), so light, dark and high-contrast themes all apply.
//
// Each map is scaled to its own peak (each exit's pattern stays visible even where its attention
// is diffuse); the peak and the patches' share of the row are written under each map, and each
// canvas carries a text equivalent for screen readers.

import { $ } from '../../common/vscode';
import { pct } from '../format';
import { exitLabel, h, model, state, vscode } from '../context';
import type { AttentionMessage, ExplainMode, RenderedSnapshot } from '../protocol';

type Maps = Extract<AttentionMessage, { exits: unknown }>;

/** Viridis (matplotlib), 11 stops from 0 to 1: sRGB. */
const VIRIDIS: [number, number, number][] = [
  [68, 1, 84],
  [72, 36, 117],
  [65, 68, 135],
  [53, 95, 141],
  [42, 120, 142],
  [33, 145, 140],
  [34, 168, 132],
  [68, 191, 112],
  [122, 209, 81],
  [189, 223, 38],
  [253, 231, 37],
];

/** The colour of t in [0, 1] (clamped): linear between the stops. */
export function viridis(t: number): [number, number, number] {
  const x = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

/** Opacity of the overlay at t (0: none of the map, 1: the map's peak). */
const alphaOf = (t: number) => 0.3 + 0.55 * t;

/**
 * The image [size x size RGBA] in grey with `map` [gh * gw] (row-major over the patch grid)
 * over it, scaled to [0, peak], into `out` (RGBA, the same size).
 */
export function overlay(
  image: Uint8Array,
  size: number,
  map: ArrayLike<number>,
  grid: [number, number],
  peak: number,
  out: Uint8ClampedArray,
): void {
  const [gh, gw] = grid;
  for (let y = 0; y < size; y++) {
    const r = Math.min(gh - 1, Math.floor((y * gh) / size));
    for (let x = 0; x < size; x++) {
      const c = Math.min(gw - 1, Math.floor((x * gw) / size));
      const t = peak > 0 ? map[r * gw + c] / peak : 0;
      const [cr, cg, cb] = viridis(t);
      const a = alphaOf(t);
      const p = (y * size + x) * 4;
      const grey = 0.299 * image[p] + 0.587 * image[p + 1] + 0.114 * image[p + 2];
      out[p] = (1 - a) * grey + a * cr;
      out[p + 1] = (1 - a) * grey + a * cg;
      out[p + 2] = (1 - a) * grey + a * cb;
      out[p + 3] = 255;
    }
  }
}

const toggle = $<HTMLButtonElement>('explain-toggle');
const body = $('explain-body');
const statusEl = $('explain-status');
const list = $('explain-maps');
const note = $('explain-note');
const mainEl = $('main');
const radios = Array.from(document.querySelectorAll<HTMLInputElement>('input[name="explain-mode"]'));

/** What the host answered, per image index of this document. */
const cache = new Map<number, AttentionMessage>();
/** Images asked for and not answered yet. */
const asked = new Set<number>();
/** What the map list shows now (rebuilt only when this changes). */
let drawn = '';
let onChange: () => void = () => undefined;

const mode = (): ExplainMode => state.explainMode ?? 'last';

/** Wires the controls; `changed` runs after Explain's state changed (the panel keeps it). */
export function initExplain(changed: () => void): void {
  onChange = changed;
  toggle.addEventListener('click', () => {
    state.explain = !state.explain;
    // Opening again retries an image whose maps failed.
    if (state.explain) for (const [i, m] of cache) if ('error' in m) cache.delete(i);
    renderExplain();
    onChange();
  });
  for (const r of radios)
    r.addEventListener('change', () => {
      if (!r.checked) return;
      state.explainMode = r.value === 'rollout' ? 'rollout' : 'last';
      renderExplain();
      onChange();
    });
  drawLegend();
}

/** A new set of images (init): indices mean other files now. */
export function resetExplain(): void {
  cache.clear();
  asked.clear();
  drawn = '';
}

export function onAttention(m: AttentionMessage): void {
  asked.delete(m.index);
  cache.set(m.index, m);
  if (m.index === state.selected) {
    renderExplain();
    onChange();
  }
}

function setStatus(text: string, error = false): void {
  statusEl.textContent = text;
  statusEl.classList.toggle('error', error);
}

export function renderExplain(): void {
  const open = !!state.explain;
  toggle.setAttribute('aria-expanded', String(open));
  toggle.textContent = open ? 'Hide the attention maps' : 'Explain: where each exit looks';
  body.hidden = !open;
  // The detail column widens while the maps are shown (inspect.css #main.explaining).
  mainEl.classList.toggle('explaining', open);
  for (const r of radios) r.checked = r.value === mode();
  if (!open) return;
  const i = state.selected;
  const got = i === undefined ? undefined : cache.get(i);
  const key = got && !('error' in got) ? `${i}:${mode()}` : '';
  if (key && key === drawn) return markTaken(i!);
  drawn = key;
  list.replaceChildren();
  note.textContent = '';
  if (!model.init || i === undefined) return setStatus('Select an image to see where its exits look.');
  if (!got) {
    if (!asked.has(i)) {
      asked.add(i);
      vscode.postMessage({ type: 'attention', index: i });
    }
    return setStatus('Computing the attention maps of this image…');
  }
  if ('error' in got) return setStatus(`No attention maps: ${got.error}`, true);
  setStatus('');
  note.textContent =
    mode() === 'last'
      ? `Each exit token's attention at its own exit layer (the last it passes), mean of ${got.heads} heads, over the ${got.grid[0]}×${got.grid[1]} patches.`
      : `Attention rollout: how attention flows to each exit token through layers 1 … its exit layer, with the residual path (½ attention + ½ identity per layer).`;
  list.append(...got.exits.map((e) => mapItem(got, e)));
  markTaken(i);
}

/** The exit the selected image takes under the slider's thresholds, marked as in the bars. */
function markTaken(i: number): void {
  const taken = model.dyn.exitOf[i];
  const exit = taken >= 0 ? model.used[taken] : -1;
  for (const li of list.children) li.classList.toggle('taken', Number((li as HTMLElement).dataset.exit) === exit + 1);
}

function mapItem(got: Maps, e: Maps['exits'][number]): HTMLLIElement {
  const map = mode() === 'last' ? e.last : e.rollout;
  let peak = 0;
  let at = 0;
  let total = 0;
  for (let k = 0; k < map.length; k++) {
    total += map[k];
    if (map[k] > peak) ((peak = map[k]), (at = k));
  }
  const [gh, gw] = got.grid;
  const li = h('li', 'explain-map');
  li.dataset.exit = String(e.exit + 1);
  li.dataset.layer = String(e.layer);
  const head = h('div', 'explain-head');
  head.append(h('span', 'explain-exit', exitLabel(e.exit)));
  const canvas = h('canvas', 'explain-canvas');
  canvas.width = got.size;
  canvas.height = got.size;
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(got.size, got.size);
    overlay(got.image, got.size, map, got.grid, peak, img.data);
    ctx.putImageData(img, 0, 0);
  }
  const rest = mode() === 'last' ? 'the exit tokens' : 'the exit tokens as they entered layer 1';
  canvas.setAttribute('role', 'img');
  canvas.setAttribute(
    'aria-label',
    `${exitLabel(e.exit)}, ${mode() === 'last' ? 'last-layer attention' : 'attention rollout'}: strongest on the patch in row ${Math.floor(at / gw) + 1} of ${gh}, column ${(at % gw) + 1} of ${gw} (${pct(peak)}); ${pct(total, 0)} on the image's patches, the rest on ${rest}.`,
  );
  const foot = h('div', 'explain-foot');
  foot.append(h('span', 'explain-peak', `peak ${pct(peak)}`), h('span', undefined, `patches ${pct(total, 0)}`));
  foot.title = `The rest of this token's ${mode() === 'last' ? 'attention' : 'rollout'} falls on ${rest}.`;
  li.append(head, canvas, foot);
  return li;
}

/** The colour scale, drawn with the same function as the maps. */
function drawLegend(): void {
  const c = $<HTMLCanvasElement>('explain-scale');
  c.width = 128;
  c.height = 1;
  const ctx = c.getContext('2d');
  if (!ctx) return;
  const img = ctx.createImageData(128, 1);
  for (let x = 0; x < 128; x++) {
    const [r, g, b] = viridis(x / 127);
    img.data.set([r, g, b, 255], x * 4);
  }
  ctx.putImageData(img, 0, 0);
}

/** Explain as the snapshot reports it (the numbers the engine sent for the selected image). */
export function explainSnapshot(): RenderedSnapshot['explain'] {
  const open = !!state.explain;
  const i = state.selected ?? null;
  const got = i === null ? undefined : cache.get(i);
  const status = !open ? 'closed' : i === null ? 'none' : !got ? 'loading' : 'error' in got ? 'error' : 'ready';
  return {
    open,
    mode: mode(),
    index: i,
    status,
    ...(got && 'error' in got ? { error: got.error } : {}),
    ...(got && !('error' in got) ? { grid: got.grid } : {}),
    exits:
      open && got && !('error' in got)
        ? got.exits.map((e) => ({
            exit: e.exit,
            layer: e.layer,
            last: Array.from(e.last),
            rollout: Array.from(e.rollout),
          }))
        : [],
  };
}
