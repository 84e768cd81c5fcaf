// UI test of the exploration panels in a real VS Code workbench (code-server + headless
// Chromium, see host.mjs), with screenshots of each panel in the light and dark themes (and high
// contrast) saved as test-artifacts/panel-<name>-<theme>.png. Unlike ui.mjs it does not package a
// VSIX: it loads this repository as a development extension (run `node esbuild.mjs` first), and
// the run it inspects is trained beforehand with the CLI (`dist/cli.js train`), as a user would
// in a terminal.
//
//   node test/vscode/host/panels-ui.mjs [--timeout SEC] [--only inspect] [--themes dark,light,high-contrast]
//
// Steps per panel live in PANELS below; each opens its panel from the command palette, checks
// what it shows with the keyboard (the user's path), and leaves it on screen for the screenshots.
// Inspect exits: F1 "MET: Inspect exits"; the grid renders the test split with thumbnails; the
// grid takes focus, ArrowDown x2 + Enter select the third image (the detail shows per-layer bars
// with top-3 classes); the slider is focused and moved with ArrowLeft (the readouts change);
// after a window reload the panel comes back with the same selection and slider point.
// Exit code 0 when all of that happened, 1 otherwise, 124 on the overall timeout.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ARTIFACTS, ROOT, cleanupDir, finish, launchBrowser, log, makeTmp, makeWorkspace, overallTimeout, requireHostEnv, startServer, tail,
  writeUserSettings,
} from './host.mjs';
import { notifications, runCommand, setTheme, THEMES, until, waitForWorkbench, webview } from './ui.mjs';

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
};

function opt(argv, name) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The Inspect exits panel: opened from the palette, driven with the keyboard. */
async function inspectPanel(page) {
  await commandWhenAvailable(page, INSPECT.command);
  const view = webview(page);
  await view.locator(INSPECT.root).waitFor({ timeout: 60_000 });
  await until('the grid to show rows with thumbnails and marked exits', async () => {
    const rows = await view.locator(INSPECT.rows).count();
    const taken = await view.locator(INSPECT.taken).count();
    const thumbs = await view.locator(INSPECT.thumbs).count();
    return rows > 0 && taken === rows && thumbs > 0 ? { rows, taken, thumbs } : false;
  }, { timeout: 60_000 });
  // Keyboard: the grid takes focus, arrows move, Enter selects.
  await view.locator(INSPECT.grid).focus();
  for (const k of ['Home', 'ArrowDown', 'ArrowDown', 'ArrowRight', 'Enter']) await page.keyboard.press(k);
  await until('the detail of the third image with top-3 classes', async () => {
    const idx = await view.locator(INSPECT.detail).getAttribute('data-index');
    const top = await view.locator(INSPECT.top3).count();
    return idx === '2' && top >= 3 ? top : false;
  }, { timeout: 60_000 });
  // The slider: focused and moved with the keyboard; the readouts follow.
  const slider = view.locator(INSPECT.slider);
  const max = Number(await slider.getAttribute('max'));
  const before = `${await view.locator(INSPECT.acc).innerText()} / ${await view.locator(INSPECT.gflops).innerText()}`;
  await slider.focus();
  for (let i = 0; i < Math.ceil(max / 2); i++) await page.keyboard.press('ArrowLeft');
  const after = `${await view.locator(INSPECT.acc).innerText()} / ${await view.locator(INSPECT.gflops).innerText()}`;
  log(`inspect: ${await view.locator(INSPECT.rows).count()} rows on screen, slider ${max + 1} points, moved from ${before} to ${after} (value ${await slider.inputValue()})`);
  if (max > 0 && after === before) throw new Error(`moving the slider did not change accuracy / GFLOPs (${before})`);
  const summary = await view.locator(INSPECT.summaryRows).count();
  if (summary < 2) throw new Error(`the per-class summary has ${summary} rows`);
  const want = { index: '2', value: await slider.inputValue() };
  return {
    view,
    /** After a window reload: the same selection and slider value. */
    async checkRestored() {
      await view.locator(INSPECT.root).waitFor({ timeout: 60_000 });
      log(`inspect: after the reload the webview started from ${await view.locator(INSPECT.root).getAttribute('data-restored')} saved state`);
      await until('Inspect exits to be restored after a window reload', async () => {
        const idx = await view.locator(INSPECT.detail).getAttribute('data-index', { timeout: 2000 });
        const value = await view.locator(INSPECT.slider).inputValue({ timeout: 2000 });
        return idx === want.index && value === want.value;
      }, { timeout: 60_000 });
      log(`inspect: restored after reload (selected image ${want.index}, slider ${want.value})`);
    },
    /** Ready for a screenshot: the grid focused (the active cell shows its focus ring). */
    async settle() {
      await view.locator(INSPECT.root).waitFor();
      await view.locator(INSPECT.grid).focus();
    },
    /** Further views for screenshots of their own: the per-class summary below the grid. */
    extra: {
      async summary() {
        await view.locator('#summary').scrollIntoViewIfNeeded();
      },
    },
  };
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

const PANELS = { inspect: inspectPanel };

async function main() {
  const argv = process.argv.slice(2);
  overallTimeout(Number(opt(argv, 'timeout') ?? process.env.MET_UI_TIMEOUT ?? 900) * 1000, 'panels-ui');
  const env = requireHostEnv();
  const only = opt(argv, 'only');
  for (const f of ['dist/extension.js', 'dist/cli.js', 'dist/webview/inspect.js']) {
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
      const panel = await open(page).catch(async (e) => {
        throw new Error(`${name}: ${e.message}; notifications: ${JSON.stringify(await notifications(page))}`);
      });
      for (const theme of (opt(argv, 'themes') ?? 'dark,light,high-contrast').split(',')) {
        await setTheme(page, userDataDir, THEMES[theme]);
        await panel.settle();
        await page.mouse.move(5, 880);
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
    console.error(`panels UI test failed: ${e?.stack ?? e}`);
    const toasts = await notifications(page);
    if (toasts.length) console.error(`notifications: ${JSON.stringify(toasts)}`);
    await shot('failure').catch(() => {});
    fs.copyFileSync(server.logFile, path.join(ARTIFACTS, 'panels-code-server.log'));
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
