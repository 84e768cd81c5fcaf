// UI test of the similarity-matrices and parameter-counts panels in a real VS Code workbench
// (code-server + headless Chromium, see host.mjs), with screenshots of each panel in the dark,
// light and high-contrast themes saved as test-artifacts/panel-<similarity|params>-<theme>.png.
// Like panels-ui.mjs (the Inspect exits panel) it loads this repository as a development
// extension (run `node esbuild.mjs` first) on a run trained beforehand with the CLI.
//
//   node test/vscode/host/panels-sim-ui.mjs [--timeout SEC] [--only similarity|params]
//
// Similarity: F1 "MET: Show similarity matrices" (the workspace's one finished run opens
// directly); the heatmaps render; the mouse hovers a cell of S^b and the readout shows that cell
// with both images loaded; the heatmap takes focus and the arrow keys move the cell (the readout
// follows); "compare with" set to none and back recomputes (3, then 4 heatmaps); after a window
// reload the panel comes back with the same cell.
// Params: F1 "MET: Show parameter counts", the config file picked in the quick pick; the
// trainable count shown equals `met params --config met.config.json --json`; Tab moves between
// the bars; after a window reload the panel comes back.
// Exit code 0 when all of that happened, 1 otherwise, 124 on the overall timeout.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ARTIFACTS, ROOT, cleanupDir, finish, launchBrowser, log, makeTmp, makeWorkspace, overallTimeout, requireHostEnv, startServer, tail,
  writeUserSettings,
} from './host.mjs';
import { acceptQuickPickItem, notifications, runCommand, SEL, TEXT, THEMES, until, waitForQuickPick, waitForThemeKind, waitForWorkbench, webview } from './ui.mjs';

// Inside the webviews (the stable ids listed in src/extension/similarity.ts and paramsPanel.ts).
export const SIM = {
  command: 'MET: Show similarity matrices',
  root: '#met-similarity',
  heatmaps: '#grid figure.heatmap',
  plot: (kind) => `#grid figure.heatmap[data-kind="${kind}"] .plot`,
  readoutWhere: '#readout p.hint',
  readoutImgs: '#readout img',
  exitB: '#exit-b',
};
export const PARAMS = {
  command: 'MET: Show parameter counts',
  root: '#met-params',
  trainable: '#cards .card[data-key="trainable"] .value',
  componentRows: '#component-rows tr',
  exitRows: '#exit-rows tr[data-exit]',
  bars: '#group-bars g.bar',
};

function opt(argv, name) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Runs a palette command, retrying while the extension is still activating (the command is not listed yet). */
async function commandWhenAvailable(page, title) {
  await until(`'${title}' to be available`, async () => {
    await runCommand(page, title, 5000).catch(async (e) => {
      await page.keyboard.press('Escape');
      throw e;
    });
    return true;
  }, { timeout: 120_000, interval: 1000 });
}

/**
 * "Preferences: Color Theme", type the theme's label, Enter (as ui.mjs setTheme, without waiting
 * for the picker's title or its "Browse Additional Color Themes" row first: opened while a
 * high-contrast theme is active, the list is scrolled to the bottom and that row is off screen,
 * and the picker has no title element in VS Code 1.139 (measured), so that wait times out).
 */
async function setTheme(page, theme) {
  await runCommand(page, TEXT.colorThemeCommand);
  await page.locator(SEL.quickInputBox).waitFor({ state: 'visible', timeout: 10_000 });
  await page.locator(SEL.quickInputBox).fill(theme.label);
  await acceptQuickPickItem(page, theme.label, 10_000);
  await waitForThemeKind(page, theme);
}

/** Hovers cell (i, j) of the heatmap of `kind` (its geometry is on the .plot's data attributes). */
async function hoverCell(view, kind, i, j) {
  const plot = view.locator(SIM.plot(kind)).first();
  const g = await plot.evaluate((el) => ({ left: Number(el.dataset.left), top: Number(el.dataset.top), cell: Number(el.dataset.cell), n: Number(el.dataset.n) }));
  await plot.hover({ position: { x: g.left + (j + 0.5) * g.cell, y: g.top + (i + 0.5) * g.cell } });
  return g;
}

const readoutCell = async (view) => (await view.locator(SIM.readoutWhere).innerText({ timeout: 2000 })).trim();

async function similarityPanel(page) {
  await commandWhenAvailable(page, SIM.command);
  const view = webview(page);
  await view.locator(SIM.root).waitFor({ timeout: 60_000 });
  const t0 = Date.now();
  await until('the heatmaps to render', async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready', { timeout: 120_000 });
  const count = await view.locator(SIM.heatmaps).count();
  // Two exits (first and last) by default: S^w, S^b once, then both exits' distances.
  if (count !== 4) throw new Error(`expected 4 heatmaps (S^w, S^b, two distance matrices), found ${count}`);
  log(`similarity: ${count} heatmaps in ${Date.now() - t0} ms after the panel opened; ${(await view.locator('#status-text').innerText()).trim()}`);

  // The mouse over a cell of S^b: the readout names it and shows both images.
  const g = await hoverCell(view, 'sb', 2, 20);
  await until('the readout of the hovered cell', async () => (await readoutCell(view)).startsWith('cell (3, 21)'), { timeout: 10_000 });
  await until('both images of the hovered cell to load', async () => {
    const loaded = await view.locator(SIM.readoutImgs).evaluateAll((imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
    return loaded.length === 2 && loaded.every(Boolean);
  }, { timeout: 20_000 });
  log(`similarity: hover shows ${await readoutCell(view)} (n = ${g.n}, ${g.cell} px per cell) with both images`);

  // The keyboard: the heatmap takes focus, the arrows move the cell from where the mouse left it.
  await view.locator(SIM.plot('sb')).first().focus();
  for (const k of ['ArrowRight', 'ArrowRight', 'ArrowDown']) await page.keyboard.press(k);
  await until('the arrow keys to move the cell', async () => (await readoutCell(view)).startsWith('cell (4, 23)'), { timeout: 10_000 });
  await page.keyboard.press('PageDown'); // the next class block
  const afterPage = await readoutCell(view);
  log(`similarity: arrows moved the cell to (4, 23), PageDown to ${afterPage}`);

  // The second exit off and on again: the engine recomputes.
  const exitB = await view.locator(SIM.exitB).inputValue();
  await view.locator(SIM.exitB).selectOption('');
  await until('3 heatmaps for one exit', async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready' && (await view.locator(SIM.heatmaps).count()) === 3, { timeout: 60_000 });
  await view.locator(SIM.exitB).selectOption(exitB);
  await until('4 heatmaps again', async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready' && (await view.locator(SIM.heatmaps).count()) === 4, { timeout: 60_000 });
  log('similarity: "compare with" none and back recomputed (3, then 4 heatmaps)');

  // The cell the readout shows last before the reload (settle() hovers one for the screenshots).
  let want = await readoutCell(view);
  return {
    async checkRestored() {
      await until('the similarity panel to be restored after a window reload', async () => {
        const ready = (await view.locator(SIM.root).getAttribute('data-status', { timeout: 2000 })) === 'ready';
        return ready && (await readoutCell(view)) === want;
      }, { timeout: 90_000 });
      log(`similarity: restored after reload (${want})`);
    },
    /** For the screenshot: a cell of S^b hovered, so that the readout shows two classes. */
    async settle() {
      await view.locator(SIM.root).waitFor();
      await until('the heatmaps in the new theme', async () => (await view.locator(SIM.root).getAttribute('data-status')) === 'ready', { timeout: 30_000 });
      await hoverCell(view, 'sb', 2, 20);
      await until('the readout of the hovered cell', async () => (await readoutCell(view)).startsWith('cell (3, 21)'), { timeout: 10_000 });
      want = await readoutCell(view);
    },
  };
}

async function paramsPanel(page, ws) {
  await commandWhenAvailable(page, PARAMS.command);
  // No config file in the active editor: the quick pick lists the workspace's config files and runs.
  await waitForQuickPick(page, PARAMS.command);
  await acceptQuickPickItem(page, 'met.config.json');
  const view = webview(page);
  await view.locator(PARAMS.root).waitFor({ timeout: 60_000 });
  await until('the parameter counts to render', async () => (await view.locator(PARAMS.root).getAttribute('data-status')) === 'ready', { timeout: 60_000 });
  const cli = spawnSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'params', '--config', 'met.config.json', '--json'], { cwd: ws.dir, encoding: 'utf8' });
  if (cli.status !== 0) throw new Error(`met params failed: ${cli.stderr}`);
  const report = JSON.parse(cli.stdout);
  const shown = (await view.locator(PARAMS.trainable).innerText()).trim();
  if (shown !== report.trainable.toLocaleString('en-US')) throw new Error(`the panel shows ${shown} trainable parameters, met params --json says ${report.trainable}`);
  const comps = await view.locator(PARAMS.componentRows).count();
  const exits = await view.locator(PARAMS.exitRows).count();
  if (comps !== report.components.length || exits !== report.exits.length) throw new Error(`${comps} component rows and ${exits} exit rows; met params has ${report.components.length} and ${report.exits.length}`);
  // Keyboard: the bars are focusable, Tab goes from one to the next.
  await view.locator(PARAMS.bars).first().focus();
  await page.keyboard.press('Tab');
  const focused = await view.locator(':focus').getAttribute('data-group');
  if (focused !== '1') throw new Error(`Tab from the first bar focused ${JSON.stringify(focused)}, not the second bar`);
  log(`params: ${shown} trainable (= met params --json), ${comps} components, ${exits} exits; Tab moves between bars`);
  return {
    async checkRestored() {
      await until('the parameter panel to be restored after a window reload', async () => (await view.locator(PARAMS.trainable).innerText({ timeout: 2000 })).trim() === shown, { timeout: 60_000 });
      log('params: restored after reload');
    },
    async settle() {
      await view.locator(PARAMS.root).waitFor();
      await page.mouse.move(5, 880);
    },
  };
}

const PANELS = { similarity: similarityPanel, params: paramsPanel };

async function main() {
  const argv = process.argv.slice(2);
  overallTimeout(Number(opt(argv, 'timeout') ?? process.env.MET_UI_TIMEOUT ?? 900) * 1000, 'panels-sim-ui');
  const env = requireHostEnv();
  const only = opt(argv, 'only');
  for (const f of ['dist/extension.js', 'dist/cli.js', 'dist/webview/similarity.js', 'dist/webview/params.js']) {
    if (!fs.existsSync(path.join(ROOT, f))) {
      console.error(`error: ${f} is missing: run node esbuild.mjs`);
      return 2;
    }
  }
  const tmp = makeTmp('met-vscode-panels-sim-');
  cleanupDir(tmp);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = path.join(tmp, 'user');
  const extensionsDir = path.join(tmp, 'extensions');
  fs.mkdirSync(extensionsDir, { recursive: true });
  writeUserSettings(userDataDir, {});

  // The workspace and a finished run in it, trained with the CLI (4 classes x 32 images; the val
  // split has 8 per class, the similarity panel's default sample).
  const ws = makeWorkspace(path.join(tmp, 'workspace'), { perClass: 32 });
  fs.writeFileSync(path.join(ws.dir, 'met.config.json'), `${JSON.stringify({
    data: 'shapes', weights: 'backbone/tiny-vit.safetensors', heads: 4, epochs: 8, batch: 8, lr: 0.005, warmupEpochs: 1, split: [50, 25, 25], threads: 1,
  }, null, 2)}\n`);
  const t0 = Date.now();
  const tr = spawnSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'train', '--config', 'met.config.json'], { cwd: ws.dir, encoding: 'utf8', timeout: 600_000 });
  if (tr.status !== 0) throw new Error(`met train failed (${tr.status}):\n${tr.stdout}\n${tr.stderr}`);
  log(`trained a run in ${((Date.now() - t0) / 1000).toFixed(1)} s (${ws.images} images)`);

  const server = await startServer(env, { userDataDir, extensionsDir, folder: ws.dir, smokeTestDriver: true, logFile: path.join(tmp, 'code-server.log') });
  const context = await launchBrowser(env, path.join(tmp, 'chromium'));
  const page = context.pages()[0] ?? (await context.newPage());
  const shot = async (name) => {
    const file = path.join(ARTIFACTS, `panel-${name}.png`);
    await page.screenshot({ path: file });
    log(`screenshot ${path.relative(ROOT, file)}`);
  };
  try {
    const url = `${server.url}/?folder=${encodeURIComponent(ws.dir)}&payload=${encodeURIComponent(JSON.stringify([['extensionDevelopmentPath', `vscode-remote://${server.authority}${ROOT}`]]))}`;
    await page.goto(url);
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
      for (const theme of ['dark', 'light', 'high-contrast']) {
        await setTheme(page, THEMES[theme]);
        await panel.settle();
        await new Promise((r) => setTimeout(r, 800));
        await shot(`${name}-${theme}`);
      }
      await page.reload();
      await waitForWorkbench(page);
      await panel.checkRestored();
    }
    log('similarity / params panels UI test passed');
    return 0;
  } catch (e) {
    console.error(`panels UI test failed: ${e?.stack ?? e}`);
    const toasts = await notifications(page);
    if (toasts.length) console.error(`notifications: ${JSON.stringify(toasts)}`);
    await shot('sim-failure').catch(() => {});
    fs.copyFileSync(server.logFile, path.join(ARTIFACTS, 'panels-sim-code-server.log'));
    console.error(`code-server log tail:\n${tail(server.logFile, 15)}`);
    return 1;
  }
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`error: ${e?.stack ?? e}`);
}
await finish(code);
