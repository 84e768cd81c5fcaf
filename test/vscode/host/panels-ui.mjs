// UI test of the exploration panels in a real VS Code workbench (code-server + headless
// Chromium, see host.mjs), with screenshots of each panel in the dark, light and high-contrast
// themes saved as test-artifacts/panel-<name>-<theme>.png. Unlike ui.mjs it does not package a
// VSIX: it loads this repository as a development extension (run `node esbuild.mjs` first), and
// the run it explores is trained beforehand with the CLI (`dist/cli.js train`), as a user would
// in a terminal.
//
//   node test/vscode/host/panels-ui.mjs [--timeout SEC] [--only inspect|similarity|params|compare|inspect-regression] [--themes dark,light,high-contrast]
//
// Steps per panel live in PANELS below; each opens its panel from the command palette, checks
// what it shows (with the keyboard, the user's path), and leaves it on screen for the screenshots;
// after a window reload each panel must come back.
// Inspect exits: F1 "MET: Inspect exits"; the grid renders the test split with thumbnails; the
// grid takes focus, ArrowDown x2 + Enter select the third image (the detail shows per-layer bars
// with top-3 classes); the slider is focused and moved with ArrowLeft (the readouts change);
// Explain opens from its button with the keyboard: one attention map per exit over the selected
// image, the arrow keys switch between last layer and rollout (a screenshot of its own,
// panel-inspect-explain-<theme>.png); Embeddings opens from its summary with the keyboard: one
// scatter per exit with the selected image highlighted, Home and an arrow key put the cursor on a
// point the readout names (panel-inspect-embeddings-<theme>.png); after the reload the same
// selection and slider point.
// Similarity: F1 "MET: Show similarity matrices" (the workspace's one finished run opens
// directly); the heatmaps render; the mouse hovers a cell of S^b and the readout shows that cell
// with both images loaded; the heatmap takes focus and the arrow keys move the cell (the readout
// follows); "compare with" set to none and back recomputes (3, then 4 heatmaps); after the reload
// the same cell.
// Params: F1 "MET: Show parameter counts", the config file picked in the quick pick; the
// trainable count shown equals `met params --config met.config.json --json`; Tab moves between
// the bars.
// Compare: a second run (variant no_gr, λ 0) is trained with the CLI next to the first one; F1
// "MET: Compare runs", both runs ticked in the multi-select quick pick (Space), Enter; the panel
// shows both runs (legend, table rows, one marker per exit each), the table's per-exit cells equal
// the runs' summary.json, the settings diff lists lambda and variant; Tab reaches the
// accuracy-versus-GFLOPs chart, whose arrow keys move the read-out point across runs, and then the
// per-exit bars (arrow keys between bars); Compute embeddings (Enter) shows both runs' embeddings
// on the same sample; after the reload the same read-out point and the embeddings again. Extra
// screenshots of the lower half (parameters, settings diff, table) and of the embeddings.
// Regression: a counting run (regression exits) is trained with the CLI next to the first run;
// F1 "MET: Inspect exits" offers both runs (the newest, the regression run, first: Enter); the
// grid shows values (no percentages) with the exit taken marked, the name column the targets;
// the keyboard selects an image, whose detail shows value bars with the target marked; the
// slider moves the MAE readout; the summary groups images by target value.
// Exit code 0 when all of that happened, 1 otherwise, 124 on the overall timeout.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ARTIFACTS,
  ROOT,
  cleanupDir,
  launchBrowser,
  log,
  makeTmp,
  makeWorkspace,
  overallTimeout,
  requireHostEnv,
  runMain,
  screenshotter,
  startServer,
  tail,
  workbenchUrl,
  writeUserSettings,
} from './host.mjs';
import {
  acceptQuickPickItem,
  commandWhenAvailable,
  notifications,
  runCommand,
  SEL,
  setTheme,
  THEMES,
  until,
  waitForQuickPick,
  waitForWorkbench,
  webview,
} from './ui.mjs';

// Inside the Inspect exits webview (the stable ids listed in src/extension/inspect.ts).
export const INSPECT = {
  command: 'MET: Inspect exits',
  root: '#met-inspect',
  grid: '#grid',
  rows: '#grid-rows .row:not([hidden])',
  taken: '#grid-rows .row:not([hidden]) .cell.exit.taken',
  thumbs: '#grid-rows .row:not([hidden]) .cell.thumb img[src]',
  slider: '#budget-slider',
  acc: '#acc',
  gflops: '#gflops',
  detail: '#detail',
  bars: '#detail-bars li.bar-row',
  top3: '#detail-bars li.bar-row ol.top3 li:not(.pending)',
  summaryRows: '#summary-rows tr',
  cellValues: '#grid-rows .row:not([hidden]) .cell.exit .cls',
  targetMarks: '#detail-bars li.bar-row svg.bar .target-mark',
  accLabel: '#acc-label',
  explain: '#explain',
  explainToggle: '#explain-toggle',
  explainMaps: '#explain-maps li.explain-map canvas.explain-canvas',
  explainMode: (/** @type {string} */ mode) => `#explain-mode input[value="${mode}"]`,
  embeddings: '#embeddings',
  embSummary: '#embeddings > summary',
  embPlots: '#emb-view svg.emb-plot',
  embHighlight: '#emb-view svg.emb-plot .pt.hl',
  embReadout: '#emb-view .emb-readout',
};

// Inside the webviews (the stable ids listed in src/extension/similarity.ts and paramsPanel.ts).
export const SIM = {
  command: 'MET: Show similarity matrices',
  root: '#met-similarity',
  heatmaps: '#grid figure.heatmap',
  plot: (/** @type {string} */ kind) => `#grid figure.heatmap[data-kind="${kind}"] .plot`,
  readoutWhere: '#readout p.hint',
  readoutImgs: '#readout img',
  exitB: '#exit-b',
};
export const COMPARE = {
  command: 'MET: Compare runs',
  root: '#met-compare',
  legend: '#legend li',
  curve: '#curve-chart',
  staticPts: '#curve-chart .pt.static',
  readout: '#curve-readout',
  bars: '#bars-chart g.bar',
  tableRows: '#table tbody tr',
  diffKeys: '#diff-table tbody tr[data-key]',
  embeddingsButton: '#embeddings-compute',
  embeddingViews: '#embeddings-grid .emb-col .emb',
};
export const PARAMS = {
  command: 'MET: Show parameter counts',
  root: '#met-params',
  trainable: '#cards .card[data-key="trainable"] .value',
  componentRows: '#component-rows tr',
  exitRows: '#exit-rows tr[data-exit]',
  bars: '#group-bars g.bar',
};

/** @typedef {import('./host.mjs').Page} Page */
/** A playwright FrameLocator of a webview's document (see ui.mjs webview()). @typedef {any} View */
/** @typedef {ReturnType<typeof makeWorkspace>} Workspace */
/**
 * What a panel's steps hand back to main(): its checks after a window reload and its screenshots.
 * @typedef {{ view?: View, parkMouse?: boolean, checkRestored(): Promise<void>, settle(): Promise<void>, extra?: Record<string, () => Promise<void>> }} PanelSteps
 */

/**
 * @param {string[]} argv
 * @param {string} name
 */
function opt(argv, name) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/**
 * The Inspect exits panel: opened from the palette, driven with the keyboard.
 * @param {Page} page
 * @returns {Promise<PanelSteps>}
 */
async function inspectPanel(page) {
  await commandWhenAvailable(page, INSPECT.command);
  const view = webview(page);
  await view.locator(INSPECT.root).waitFor({ timeout: 60_000 });
  await until(
    'the grid to show rows with thumbnails and marked exits',
    async () => {
      const rows = await view.locator(INSPECT.rows).count();
      const taken = await view.locator(INSPECT.taken).count();
      const thumbs = await view.locator(INSPECT.thumbs).count();
      return rows > 0 && taken === rows && thumbs > 0 ? { rows, taken, thumbs } : false;
    },
    { timeout: 60_000 },
  );
  // Keyboard: the grid takes focus, arrows move, Enter selects.
  await view.locator(INSPECT.grid).focus();
  for (const k of ['Home', 'ArrowDown', 'ArrowDown', 'ArrowRight', 'Enter']) await page.keyboard.press(k);
  await until(
    'the detail of the third image with top-3 classes',
    async () => {
      const idx = await view.locator(INSPECT.detail).getAttribute('data-index');
      const top = await view.locator(INSPECT.top3).count();
      return idx === '2' && top >= 3 ? top : false;
    },
    { timeout: 60_000 },
  );
  // The slider: focused and moved with the keyboard; the readouts follow.
  const slider = view.locator(INSPECT.slider);
  const max = Number(await slider.getAttribute('max'));
  const before = `${await view.locator(INSPECT.acc).innerText()} / ${await view.locator(INSPECT.gflops).innerText()}`;
  await slider.focus();
  for (let i = 0; i < Math.ceil(max / 2); i++) await page.keyboard.press('ArrowLeft');
  const after = `${await view.locator(INSPECT.acc).innerText()} / ${await view.locator(INSPECT.gflops).innerText()}`;
  log(
    `inspect: ${await view.locator(INSPECT.rows).count()} rows on screen, slider ${max + 1} points, moved from ${before} to ${after} (value ${await slider.inputValue()})`,
  );
  if (max > 0 && after === before) throw new Error(`moving the slider did not change accuracy / GFLOPs (${before})`);
  const summary = await view.locator(INSPECT.summaryRows).count();
  if (summary < 2) throw new Error(`the per-class summary has ${summary} rows`);
  // Explain, with the keyboard: its button opens the maps, the arrow keys move between the maps.
  const exits = await view.locator(INSPECT.bars).count();
  const maps = await openExplain(page, view, exits);
  await view.locator(INSPECT.explainMode('last')).focus();
  await page.keyboard.press('ArrowRight');
  await until('the rollout maps', async () => view.locator(INSPECT.explainMode('rollout')).isChecked(), {
    timeout: 10_000,
  });
  await page.keyboard.press('ArrowLeft');
  log(`inspect: Explain shows ${maps} attention maps (one per exit); the arrow keys switch last layer / rollout`);
  // Embeddings, with the keyboard: the summary opens them, the arrow keys move between points.
  log(`inspect: Embeddings show ${exits} plots; the keyboard's point: ${await openEmbeddings(page, view, exits)}`);
  return inspectSteps(
    view,
    'inspect',
    { index: '2', value: await slider.inputValue() },
    {
      async explain() {
        await openExplain(page, view, exits);
        await view.locator(INSPECT.explain).scrollIntoViewIfNeeded();
      },
      async embeddings() {
        await openEmbeddings(page, view, exits);
        await view.locator(INSPECT.embeddings).scrollIntoViewIfNeeded();
        // The keyboard's cursor on a point, and the readout naming it.
        await view.locator(INSPECT.embPlots).nth(1).focus();
        for (const k of ['Home', 'ArrowRight']) await page.keyboard.press(k);
      },
    },
  );
}

/**
 * Opens Embeddings with the keyboard (its summary, Enter; when closed) and waits for one plot per
 * exit with the selected image highlighted in each. Returns the readout after Home and an arrow.
 * @param {Page} page
 * @param {View} view
 * @param {number} exits
 */
async function openEmbeddings(page, view, exits) {
  if (!(await view.locator(INSPECT.embeddings).evaluate((/** @type {HTMLDetailsElement} */ d) => d.open))) {
    await view.locator(INSPECT.embSummary).focus();
    await page.keyboard.press('Enter');
  }
  await until(
    'one embeddings plot per exit, the selected image highlighted in each',
    async () => {
      const status = await view.locator('#emb-status').innerText();
      if (/^Embeddings: /.test(status)) throw new Error(status);
      const plots = await view.locator(INSPECT.embPlots).count();
      const hl = await view.locator(INSPECT.embHighlight).count();
      return plots > 0 && plots === exits && hl === exits ? plots : false;
    },
    { timeout: 120_000 },
  );
  await view.locator(INSPECT.embPlots).first().focus();
  for (const k of ['Home', 'ArrowRight']) await page.keyboard.press(k);
  const readout = await view.locator(INSPECT.embReadout).innerText();
  if (!/ · .+ · exit 1: PC1 /.test(readout)) throw new Error(`the embeddings readout names no point: ${readout}`);
  return readout;
}

/**
 * Opens Explain from its button with the keyboard (when closed) and waits for one map per exit.
 * @param {Page} page
 * @param {View} view
 * @param {number} exits
 */
async function openExplain(page, view, exits) {
  const toggle = view.locator(INSPECT.explainToggle);
  if ((await toggle.getAttribute('aria-expanded')) !== 'true') {
    await toggle.focus();
    await page.keyboard.press('Enter');
  }
  return until(
    'the attention maps of the selected image',
    async () => {
      const status = await view.locator('#explain-status').innerText();
      if (/^No attention maps/.test(status)) throw new Error(status);
      const n = await view.locator(INSPECT.explainMaps).count();
      return n > 0 && n === exits ? n : false;
    },
    { timeout: 60_000 },
  );
}

/**
 * What both Inspect exits steps hand back: after a window reload the same selection and slider
 * point (`want`), the grid focused for screenshots (Explain closed), and the per-class summary
 * (and `more`, e.g. Explain) as views of their own.
 * @param {View} view
 * @param {string} name
 * @param {{ index: string, value: string }} want
 * @param {Record<string, () => Promise<void>>} [more]
 * @returns {PanelSteps}
 */
function inspectSteps(view, name, want, more = {}) {
  return {
    parkMouse: true,
    view,
    async checkRestored() {
      await view.locator(INSPECT.root).waitFor({ timeout: 60_000 });
      log(
        `${name}: after the reload the webview started from ${await view.locator(INSPECT.root).getAttribute('data-restored')} saved state`,
      );
      await until(
        `${name} to be restored after a window reload`,
        async () => {
          const idx = await view.locator(INSPECT.detail).getAttribute('data-index', { timeout: 2000 });
          const value = await view.locator(INSPECT.slider).inputValue({ timeout: 2000 });
          return idx === want.index && value === want.value;
        },
        { timeout: 60_000 },
      );
      log(`${name}: restored after reload (selected image ${want.index}, slider ${want.value})`);
    },
    /** Ready for a screenshot: the grid focused (the active cell shows its focus ring), Explain closed. */
    async settle() {
      await view.locator(INSPECT.root).waitFor();
      const toggle = view.locator(INSPECT.explainToggle);
      if ((await toggle.getAttribute('aria-expanded')) === 'true') await toggle.click();
      await view.locator(INSPECT.grid).focus();
    },
    /** Further views for screenshots of their own: the per-class summary below the grid. */
    extra: {
      async summary() {
        await view.locator('#summary').scrollIntoViewIfNeeded();
      },
      ...more,
    },
  };
}

/**
 * A regression run (counting images) trained with the CLI, then Inspect exits on it from the palette.
 * @param {Page} page
 * @param {Workspace} ws
 * @returns {Promise<PanelSteps>}
 */
async function regressionPanel(page, ws) {
  const data = path.join(ws.dir, 'counting');
  const script = `
    const { writeCountingFolder } = require(${JSON.stringify(path.join(ROOT, 'src/engine/demo/shapes.ts'))});
    writeCountingFolder({ out: ${JSON.stringify(data)}, n: 96, seed: 3, maxCount: 4 }).catch((e) => { console.error(e); process.exit(1); });`;
  const g = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (g.status !== 0) throw new Error(`generating ${data} failed:\n${g.stdout}\n${g.stderr}`);
  const t0 = Date.now();
  const tr = spawnSync(
    process.execPath,
    [
      path.join(ROOT, 'dist/cli.js'),
      'train',
      '--task',
      'regression',
      '--data',
      'counting',
      '--weights',
      'backbone/tiny-vit.safetensors',
      '--heads',
      '4',
      '--exits',
      '2,4,6',
      '--epochs',
      '4',
      '--batch',
      '16',
      '--lr',
      '0.003',
      '--warmup-epochs',
      '0',
      '--split',
      '50,25,25',
      '--threads',
      '1',
    ],
    { cwd: ws.dir, encoding: 'utf8', timeout: 600_000 },
  );
  if (tr.status !== 0)
    throw new Error(`met train --task regression failed (${tr.status}):\n${tr.stdout}\n${tr.stderr}`);
  log(`regression: trained a counting run in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // Two finished runs now: the palette command asks, newest (the regression run) first. Until
  // the runs view has noticed the new run (file watcher, or its 3 s check), the command opens the
  // only run it knows directly: close that and ask again.
  await until(
    'the quick pick of runs to inspect',
    async () => {
      await commandWhenAvailable(page, INSPECT.command);
      const items = await waitForQuickPick(page, 'MET: Inspect exits', 5000).catch(() => []);
      if (items.length >= 2 && /regression/.test(items[0])) return items;
      await page.keyboard.press('Escape');
      await runCommand(page, 'View: Close All Editors', 5000).catch(() => page.keyboard.press('Escape'));
      return false;
    },
    { timeout: 60_000, interval: 2000 },
  );
  await page.keyboard.press('Enter');
  const view = webview(page);
  await view.locator(INSPECT.root).waitFor({ timeout: 60_000 });
  const cells = await until(
    'the grid to show values with marked exits',
    async () => {
      if ((await view.locator(INSPECT.accLabel).innerText()) !== 'MAE') return false;
      const rows = await view.locator(INSPECT.rows).count();
      const taken = await view.locator(INSPECT.taken).count();
      const values = await view.locator(INSPECT.cellValues).allInnerTexts();
      return rows > 0 && taken === rows && values.length && values.every((/** @type {string} */ v) => /^-?\d/.test(v))
        ? values
        : false;
    },
    { timeout: 60_000 },
  );
  if (cells.some((/** @type {string} */ v) => v.includes('%')))
    throw new Error(`regression cells show percentages: ${cells.slice(0, 6).join(', ')}`);
  await view.locator(INSPECT.grid).focus();
  for (const k of ['Home', 'ArrowDown', 'Enter']) await page.keyboard.press(k);
  await until(
    'the detail of the second image with the target marked on every exit',
    async () => {
      const idx = await view.locator(INSPECT.detail).getAttribute('data-index');
      const marks = await view.locator(INSPECT.targetMarks).count();
      const bars = await view.locator(INSPECT.bars).count();
      return idx === '1' && bars === 3 && marks === 3 ? marks : false;
    },
    { timeout: 60_000 },
  );
  // The slider's two ends (neighbouring points can give the same numbers on 24 test images).
  const slider = view.locator(INSPECT.slider);
  const max = Number(await slider.getAttribute('max'));
  const readout = async () =>
    `${await view.locator(INSPECT.acc).innerText()} / ${await view.locator(INSPECT.gflops).innerText()}`;
  await slider.focus();
  await page.keyboard.press('Home');
  const before = await readout();
  await page.keyboard.press('End');
  const after = await readout();
  if (max > 0 && after === before)
    throw new Error(`moving the slider end to end did not change MAE / GFLOPs (${before})`);
  for (let i = 0; i < Math.ceil(max / 2); i++) await page.keyboard.press('ArrowLeft');
  const groups = await view.locator('#summary-rows tr th.cls').allInnerTexts();
  log(
    `regression: values ${cells.slice(0, 3).join(', ')}…, slider ${max + 1} points, MAE / GFLOPs ${before} -> ${after}; summary rows ${groups.join(', ')}`,
  );
  if (!groups.slice(1).every((/** @type {string} */ g) => /^= \d+$/.test(g)))
    throw new Error(`the summary should group counts by value: ${groups.join(', ')}`);
  return inspectSteps(view, 'regression', { index: '1', value: await slider.inputValue() });
}

/**
 * Hovers cell (i, j) of the heatmap of `kind` (its geometry is on the .plot's data attributes).
 * @param {View} view
 * @param {string} kind
 * @param {number} i
 * @param {number} j
 */
async function hoverCell(view, kind, i, j) {
  const plot = view.locator(SIM.plot(kind)).first();
  const g = await plot.evaluate((/** @type {HTMLElement} */ el) => ({
    left: Number(el.dataset.left),
    top: Number(el.dataset.top),
    cell: Number(el.dataset.cell),
    n: Number(el.dataset.n),
  }));
  await plot.hover({ position: { x: g.left + (j + 0.5) * g.cell, y: g.top + (i + 0.5) * g.cell } });
  return g;
}

const readoutCell = async (/** @type {View} */ view) =>
  (await view.locator(SIM.readoutWhere).innerText({ timeout: 2000 })).trim();

/**
 * @param {Page} page
 * @returns {Promise<PanelSteps>}
 */
async function similarityPanel(page) {
  await commandWhenAvailable(page, SIM.command);
  const view = webview(page);
  await view.locator(SIM.root).waitFor({ timeout: 60_000 });
  const t0 = Date.now();
  await until(
    'the heatmaps to render',
    async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready',
    { timeout: 120_000 },
  );
  const count = await view.locator(SIM.heatmaps).count();
  // Two exits (first and last) by default: S^w, S^b once, then both exits' distances.
  if (count !== 4) throw new Error(`expected 4 heatmaps (S^w, S^b, two distance matrices), found ${count}`);
  log(
    `similarity: ${count} heatmaps in ${Date.now() - t0} ms after the panel opened; ${(await view.locator('#status-text').innerText()).trim()}`,
  );

  // The mouse over a cell of S^b: the readout names it and shows both images.
  const g = await hoverCell(view, 'sb', 2, 20);
  await until('the readout of the hovered cell', async () => (await readoutCell(view)).startsWith('cell (3, 21)'), {
    timeout: 10_000,
  });
  await until(
    'both images of the hovered cell to load',
    async () => {
      const loaded = await view
        .locator(SIM.readoutImgs)
        .evaluateAll((/** @type {HTMLImageElement[]} */ imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
      return loaded.length === 2 && loaded.every(Boolean);
    },
    { timeout: 20_000 },
  );
  log(`similarity: hover shows ${await readoutCell(view)} (n = ${g.n}, ${g.cell} px per cell) with both images`);

  // The keyboard: the heatmap takes focus, the arrows move the cell from where the mouse left it.
  await view.locator(SIM.plot('sb')).first().focus();
  for (const k of ['ArrowRight', 'ArrowRight', 'ArrowDown']) await page.keyboard.press(k);
  await until('the arrow keys to move the cell', async () => (await readoutCell(view)).startsWith('cell (4, 23)'), {
    timeout: 10_000,
  });
  await page.keyboard.press('PageDown'); // the next class block
  const afterPage = await readoutCell(view);
  log(`similarity: arrows moved the cell to (4, 23), PageDown to ${afterPage}`);

  // The second exit off and on again: the engine recomputes.
  const exitB = await view.locator(SIM.exitB).inputValue();
  await view.locator(SIM.exitB).selectOption('');
  await until(
    '3 heatmaps for one exit',
    async () =>
      (await view.locator(SIM.root).getAttribute('data-status')) === 'ready' &&
      (await view.locator(SIM.heatmaps).count()) === 3,
    { timeout: 60_000 },
  );
  await view.locator(SIM.exitB).selectOption(exitB);
  await until(
    '4 heatmaps again',
    async () =>
      (await view.locator(SIM.root).getAttribute('data-status')) === 'ready' &&
      (await view.locator(SIM.heatmaps).count()) === 4,
    { timeout: 60_000 },
  );
  log('similarity: "compare with" none and back recomputed (3, then 4 heatmaps)');

  // The cell the readout shows last before the reload (settle() hovers one for the screenshots).
  let want = await readoutCell(view);
  return {
    async checkRestored() {
      await until(
        'the similarity panel to be restored after a window reload',
        async () => {
          const ready = (await view.locator(SIM.root).getAttribute('data-status', { timeout: 2000 })) === 'ready';
          return ready && (await readoutCell(view)) === want;
        },
        { timeout: 90_000 },
      );
      log(`similarity: restored after reload (${want})`);
    },
    /** For the screenshot: a cell of S^b hovered, so that the readout shows two classes. */
    async settle() {
      await view.locator(SIM.root).waitFor();
      await until(
        'the heatmaps in the new theme',
        async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready',
        { timeout: 30_000 },
      );
      await hoverCell(view, 'sb', 2, 20);
      await until('the readout of the hovered cell', async () => (await readoutCell(view)).startsWith('cell (3, 21)'), {
        timeout: 10_000,
      });
      want = await readoutCell(view);
    },
  };
}

/**
 * @param {Page} page
 * @param {Workspace} ws
 * @returns {Promise<PanelSteps>}
 */
async function paramsPanel(page, ws) {
  await commandWhenAvailable(page, PARAMS.command);
  // No config file in the active editor: the quick pick lists the workspace's config files and runs.
  await waitForQuickPick(page, PARAMS.command);
  await acceptQuickPickItem(page, 'met.config.json');
  const view = webview(page);
  await view.locator(PARAMS.root).waitFor({ timeout: 60_000 });
  await until(
    'the parameter counts to render',
    async () => (await view.locator(PARAMS.root).getAttribute('data-status')) === 'ready',
    { timeout: 60_000 },
  );
  const cli = spawnSync(
    process.execPath,
    [path.join(ROOT, 'dist/cli.js'), 'params', '--config', 'met.config.json', '--json'],
    { cwd: ws.dir, encoding: 'utf8' },
  );
  if (cli.status !== 0) throw new Error(`met params failed: ${cli.stderr}`);
  const report = JSON.parse(cli.stdout);
  const shown = (await view.locator(PARAMS.trainable).innerText()).trim();
  if (shown !== report.trainable.toLocaleString('en-US'))
    throw new Error(`the panel shows ${shown} trainable parameters, met params --json says ${report.trainable}`);
  const comps = await view.locator(PARAMS.componentRows).count();
  const exits = await view.locator(PARAMS.exitRows).count();
  if (comps !== report.components.length || exits !== report.exits.length)
    throw new Error(
      `${comps} component rows and ${exits} exit rows; met params has ${report.components.length} and ${report.exits.length}`,
    );
  // Keyboard: the bars are focusable, Tab goes from one to the next.
  await view.locator(PARAMS.bars).first().focus();
  await page.keyboard.press('Tab');
  const focused = await view.locator(':focus').getAttribute('data-group');
  if (focused !== '1') throw new Error(`Tab from the first bar focused ${JSON.stringify(focused)}, not the second bar`);
  log(`params: ${shown} trainable (= met params --json), ${comps} components, ${exits} exits; Tab moves between bars`);
  return {
    async checkRestored() {
      await until(
        'the parameter panel to be restored after a window reload',
        async () => (await view.locator(PARAMS.trainable).innerText({ timeout: 2000 })).trim() === shown,
        { timeout: 60_000 },
      );
      log('params: restored after reload');
    },
    async settle() {
      await view.locator(PARAMS.root).waitFor();
      await page.mouse.move(5, 880);
    },
  };
}

/**
 * Two runs side by side: a second run trained with the CLI, both ticked in the quick pick.
 * @param {Page} page
 * @param {Workspace} ws
 * @returns {Promise<PanelSteps>}
 */
async function comparePanel(page, ws) {
  const t0 = Date.now();
  const tr = spawnSync(
    process.execPath,
    [path.join(ROOT, 'dist/cli.js'), 'train', '--config', 'met.config.json', '--variant', 'no_gr', '--lambda', '0'],
    { cwd: ws.dir, encoding: 'utf8', timeout: 600_000 },
  );
  if (tr.status !== 0) throw new Error(`met train --variant no_gr failed (${tr.status}):\n${tr.stdout}\n${tr.stderr}`);
  log(`compare: trained a no_gr run in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const runsDir = path.join(ws.dir, '.met', 'runs');
  const runs = fs.readdirSync(runsDir).filter((d) => fs.existsSync(path.join(runsDir, d, 'summary.json')));
  if (runs.length !== 2) throw new Error(`expected two finished runs in ${runsDir}, found ${runs.join(', ')}`);
  // Until the runs view has noticed the new run (file watcher, or its 3 s check), the quick pick
  // lists one run and the command says so: ask again.
  const isRun = (/** @type {string} */ label) => runs.some((r) => label.startsWith(r));
  await until(
    'the quick pick to list both runs',
    async () => {
      await commandWhenAvailable(page, COMPARE.command);
      // (Not waitForQuickPick: a multi-select quick pick opens with no row focused.)
      await page
        .locator(SEL.quickInputTitle, { hasText: COMPARE.command })
        .waitFor({ timeout: 5000 })
        .catch(() => {});
      await new Promise((r) => setTimeout(r, 500));
      const items = await page
        .locator(SEL.quickInputRows)
        .evaluateAll((/** @type {Element[]} */ els) => els.map((e) => e.getAttribute('aria-label') ?? ''));
      if (items.filter(isRun).length === 2) return items;
      await page.keyboard.press('Escape');
      return false;
    },
    { timeout: 60_000, interval: 2000 },
  );
  // Tick both with the keyboard: the arrow keys move to a row, Space ticks it.
  for (const run of runs) {
    await until(
      `${run} to be ticked`,
      async () => {
        const rows = await page.$$eval(SEL.quickInputRows, (/** @type {Element[]} */ els) =>
          els
            .map((e) => ({
              label: e.getAttribute('aria-label') ?? '',
              focused: e.classList.contains('focused'),
              checked:
                e.getAttribute('aria-checked') === 'true' ||
                !!e.querySelector('input[type=checkbox]:checked, .monaco-checkbox.checked, [aria-checked=true]'),
              top: e.getBoundingClientRect().top,
            }))
            .sort((a, b) => a.top - b.top),
        );
        const target = rows.findIndex((/** @type {{ label: string }} */ r) => r.label.startsWith(run));
        const focused = rows.findIndex((/** @type {{ focused: boolean }} */ r) => r.focused);
        if (target < 0) return false;
        if (rows[target].checked) return true;
        if (focused !== target) await page.keyboard.press(target > focused ? 'ArrowDown' : 'ArrowUp');
        else await page.keyboard.press('Space');
        return false;
      },
      { timeout: 20_000, interval: 200 },
    );
  }
  await page.keyboard.press('Enter');
  const view = webview(page);
  await view.locator(COMPARE.root).waitFor({ timeout: 60_000 });
  await until(
    'both runs in the legend, the table and the chart',
    async () =>
      (await view.locator(COMPARE.root).getAttribute('data-status')) === 'ready' &&
      (await view.locator(COMPARE.legend).count()) === 2 &&
      (await view.locator(COMPARE.tableRows).count()) === 2,
    { timeout: 60_000 },
  );
  // The table's per-exit cells are the runs' test accuracies (summary.json, what met eval prints).
  const legend = (await view.locator(COMPARE.legend).allInnerTexts()).map((/** @type {string} */ t) =>
    t.split('\n')[0].trim(),
  );
  let exits = 0;
  for (const [i, name] of legend.entries()) {
    const summary = JSON.parse(fs.readFileSync(path.join(runsDir, name, 'summary.json'), 'utf8'));
    exits = summary.exits.length;
    // The visible text (without the "(best)" said to screen readers only).
    const cells = await view
      .locator(`#table tbody tr[data-run="${i}"] td.num`)
      .evaluateAll((/** @type {HTMLElement[]} */ tds) =>
        tds.map((td) =>
          [...td.childNodes]
            .filter((n) => !(n instanceof HTMLElement && n.classList.contains('sr-only')))
            .map((n) => n.textContent)
            .join(''),
        ),
      );
    const want = summary.exits.map((/** @type {{ accuracy: number }} */ e) => (100 * e.accuracy).toFixed(1));
    if (JSON.stringify(cells.slice(0, exits)) !== JSON.stringify(want))
      throw new Error(`${name}: the table shows ${cells.slice(0, exits).join(', ')}, summary.json ${want.join(', ')}`);
  }
  const markers = await view.locator(COMPARE.staticPts).count();
  if (markers !== 2 * exits) throw new Error(`${markers} exit markers on the curve chart, expected ${2 * exits}`);
  const diff = await view
    .locator(COMPARE.diffKeys)
    .evaluateAll((/** @type {HTMLElement[]} */ rows) => rows.map((r) => r.dataset.key));
  if (JSON.stringify(diff) !== JSON.stringify(['lambda', 'variant']))
    throw new Error(`the settings diff lists ${diff.join(', ')}`);
  // Keyboard: Tab from the last header button reaches the curve chart; the arrows move the point.
  await view.locator('#export-svg').focus();
  await page.keyboard.press('Tab');
  const focusedId = await view.locator(':focus').getAttribute('id');
  if (focusedId !== 'curve-chart') throw new Error(`Tab from Export SVG focused #${focusedId}, not the curve chart`);
  const readout = () => view.locator(COMPARE.readout).innerText();
  const first = await readout();
  for (const k of ['ArrowRight', 'ArrowRight', 'ArrowDown']) await page.keyboard.press(k);
  const moved = await readout();
  if (!moved.startsWith(`${legend[1]}: `) || moved === first)
    throw new Error(`the arrow keys did not move the read-out to the second run: ${first} -> ${moved}`);
  // Tab on: the per-exit bars, one Tab stop, the arrow keys between bars.
  await page.keyboard.press('Tab');
  const bar0 = await view.locator(':focus').getAttribute('aria-label');
  await page.keyboard.press('ArrowRight');
  const bar1 = await view.locator(':focus').getAttribute('aria-label');
  if (!bar0 || !bar1 || bar0 === bar1) throw new Error(`the bars did not take the keyboard: ${bar0} -> ${bar1}`);
  log(
    `compare: ${legend.join(' vs ')}; ${markers} exit markers; diff ${diff.join(', ')}; keyboard: ${first} -> ${moved}; bars ${bar0} -> ${bar1}`,
  );
  // Embeddings, from the keyboard: both runs side by side (the engine computes them).
  await view.locator(COMPARE.embeddingsButton).focus();
  await page.keyboard.press('Enter');
  const embeddings = async () => {
    const status = await view.locator('#embeddings-status').innerText({ timeout: 2000 });
    if (/embeddings\/compute/.test(status)) throw new Error(status);
    return (await view.locator(COMPARE.embeddingViews).count()) === 2 && /^the same \d+ images/.test(status)
      ? status
      : false;
  };
  log(`compare: embeddings: ${await until('the embeddings of both runs', embeddings, { timeout: 120_000 })}`);
  return {
    parkMouse: true,
    view,
    async checkRestored() {
      await until(
        'the compare panel to be restored after a window reload',
        async () =>
          (await view.locator(COMPARE.root).getAttribute('data-status', { timeout: 2000 })) === 'ready' &&
          (await view.locator(COMPARE.legend).count()) === 2 &&
          (await readout()) === moved &&
          !!(await embeddings()),
        { timeout: 90_000 },
      );
      log(`compare: restored after reload (${moved}; the embeddings again)`);
    },
    async settle() {
      await view.locator(COMPARE.root).waitFor();
      await view.locator(COMPARE.curve).focus();
      await view.locator(COMPARE.root).evaluate(() => window.scrollTo(0, 0));
    },
    extra: {
      async lower() {
        await view.locator('#table-wrap').scrollIntoViewIfNeeded();
      },
      async embeddings() {
        await view
          .locator('#embeddings')
          .evaluate((/** @type {HTMLElement} */ e) => e.scrollIntoView({ block: 'start' }));
      },
    },
  };
}

// 'compare' and 'regression' last: they add finished runs to the workspace, which the others do
// not expect (the regression step's quick pick still finds its run first: the newest).
/** @type {Record<string, (page: Page, ws: Workspace) => Promise<PanelSteps>>} */
const PANELS = {
  inspect: inspectPanel,
  similarity: similarityPanel,
  params: paramsPanel,
  compare: comparePanel,
  'inspect-regression': regressionPanel,
};

async function main() {
  const argv = process.argv.slice(2);
  overallTimeout(Number(opt(argv, 'timeout') ?? process.env.MET_UI_TIMEOUT ?? 900) * 1000, 'panels-ui');
  const env = requireHostEnv();
  const only = opt(argv, 'only');
  for (const f of [
    'dist/extension.js',
    'dist/cli.js',
    'dist/webview/inspect.js',
    'dist/webview/similarity.js',
    'dist/webview/params.js',
    'dist/webview/compare.js',
  ]) {
    if (!fs.existsSync(path.join(ROOT, f))) {
      console.error(`error: ${f} is missing: run node esbuild.mjs`);
      return 2;
    }
  }
  const tmp = makeTmp('met-vscode-panels-');
  cleanupDir(tmp);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = path.join(tmp, 'user');
  const extensionsDir = path.join(tmp, 'extensions');
  fs.mkdirSync(extensionsDir, { recursive: true });
  writeUserSettings(userDataDir, {});

  // The workspace and a finished run in it, trained with the CLI (4 classes x 32 images).
  const ws = makeWorkspace(path.join(tmp, 'workspace'), { perClass: 32 });
  fs.writeFileSync(
    path.join(ws.dir, 'met.config.json'),
    `${JSON.stringify(
      {
        data: 'shapes',
        weights: 'backbone/tiny-vit.safetensors',
        heads: 4,
        epochs: 8,
        batch: 8,
        lr: 0.005,
        warmupEpochs: 1,
        split: [50, 25, 25],
        threads: 1,
      },
      null,
      2,
    )}\n`,
  );
  const t0 = Date.now();
  const tr = spawnSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'train', '--config', 'met.config.json'], {
    cwd: ws.dir,
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (tr.status !== 0) throw new Error(`met train failed (${tr.status}):\n${tr.stdout}\n${tr.stderr}`);
  log(`trained a run in ${((Date.now() - t0) / 1000).toFixed(1)} s (${ws.images} images)`);

  const server = await startServer(env, {
    userDataDir,
    extensionsDir,
    folder: ws.dir,
    smokeTestDriver: true,
    logFile: path.join(tmp, 'code-server.log'),
  });
  const context = await launchBrowser(env, path.join(tmp, 'chromium'));
  const page = context.pages()[0] ?? (await context.newPage());
  const shot = screenshotter(page, 'panel-');
  try {
    await page.goto(workbenchUrl(server, ws.dir, [['extensionDevelopmentPath', ROOT]]));
    await waitForWorkbench(page);
    log('workbench ready');
    // The side bar takes a third of the screenshot: the panels are what is shown.
    await runCommand(page, 'View: Close Primary Side Bar', 5000).catch(() => page.keyboard.press('Escape'));
    for (const [name, open] of Object.entries(PANELS)) {
      if (only && only !== name) continue;
      await runCommand(page, 'View: Close All Editors', 5000).catch(() => page.keyboard.press('Escape'));
      const panel = await open(page, ws).catch(async (e) => {
        throw new Error(`${name}: ${e.message}; notifications: ${JSON.stringify(await notifications(page))}`);
      });
      for (const theme of (opt(argv, 'themes') ?? 'dark,light,high-contrast').split(',')) {
        await setTheme(page, userDataDir, THEMES[/** @type {keyof typeof THEMES} */ (theme)]);
        await panel.settle();
        if (panel.parkMouse) await page.mouse.move(5, 880); // no hover effects in the shot
        await new Promise((r) => setTimeout(r, 800));
        await shot(`${name}-${theme}`);
        for (const [part, show] of Object.entries(panel.extra ?? {})) {
          if (theme === 'high-contrast') continue;
          await show();
          await new Promise((r) => setTimeout(r, 400));
          await shot(`${name}-${part}-${theme}`);
          await panel.settle();
        }
      }
      await page.reload();
      await waitForWorkbench(page);
      await panel.checkRestored();
    }
    log('panels UI test passed');
    return 0;
  } catch (e) {
    console.error(`panels UI test failed: ${/** @type {Error} */ (e)?.stack ?? e}`);
    const toasts = await notifications(page);
    if (toasts.length) console.error(`notifications: ${JSON.stringify(toasts)}`);
    await shot('failure').catch(() => {});
    fs.copyFileSync(server.logFile, path.join(ARTIFACTS, 'panels-code-server.log'));
    console.error(`code-server log tail:\n${tail(server.logFile, 15)}`);
    return 1;
  }
}

await runMain(main);
