// UI end-to-end test of the packaged extension in a real VS Code workbench (code-server +
// headless Chromium, see host.mjs), and the small helper library it is written with.
//
// The test (node test/vscode/host/ui.mjs, npm run test:ui):
//   1. packages the VSIX (npm run package into the temp dir; --vsix FILE or MET_VSIX uses a given
//      one; --dev loads the repository as a development extension instead of installing);
//   2. installs it with `code-server --install-extension` into a fresh profile and opens a fresh
//      workspace: shapes/<class>/*.png (generated), backbone/tiny-vit.safetensors and a
//      met.config.json with a short schedule, so the run takes seconds, not minutes;
//   3. presses F1, runs "MET: Fine-tune on folder" and accepts the three quick picks with Enter
//      (image folder, backbone weights, confirm settings), checking each step's title;
//   4. opens the dashboard from the status-bar item (the user's path; falls back to "MET: Show
//      training dashboard") and waits until the webview shows the run's step counter move and
//      the run finish ("done");
//   5. opens the "MET runs" view and waits for the run's row with status done;
//   6. reloads the window: the dashboard must come back (WebviewPanelSerializer) with the run;
//   7. saves screenshots in test-artifacts/: ui-dark.png, ui-light.png, ui-high-contrast.png,
//      each theme picked with "Preferences: Color Theme", which writes workbench.colorTheme into
//      the user settings (the ids VS Code 1.139 writes: 'Dark Modern', 'Light Modern', 'Default
//      High Contrast'). Editing settings.json from outside is not applied by the running web
//      workbench (measured), hence the picker. On failure:
//      ui-failure.png and ui-code-server.log.
// Exit code 0 when all of that happened, 1 otherwise, 124 on the overall timeout (--timeout SEC,
// default 600).
//
// Selectors live in SEL below: the workbench's are VS Code 1.139's DOM; the dashboard's are the
// stable ids documented at the top of src/extension/dashboard.ts.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ARTIFACTS,
  ROOT,
  cleanupDir,
  installVsix,
  launchBrowser,
  log,
  makeTmp,
  makeWorkspace,
  overallTimeout,
  requireHostEnv,
  startServer,
  runMain,
  screenshotter,
  tail,
  workbenchUrl,
  writeUserSettings,
} from './host.mjs';

// ---- Selectors and texts (one place) ----------------------------------------------------------
export const SEL = {
  workbench: '.monaco-workbench',
  statusBar: '.part.statusbar',
  quickInput: '.quick-input-widget',
  quickInputBox: '.quick-input-widget .quick-input-box input',
  quickInputTitle: '.quick-input-widget .quick-input-title',
  quickInputRows: '.quick-input-widget .monaco-list-row',
  /** The focused (Enter-accepted) row of the quick pick. */
  quickInputFocused: '.quick-input-widget .monaco-list-row.focused',
  notificationToast: '.notifications-toasts .notification-toast',
  activityBar: '.part.activitybar',
  sideBar: '.part.sidebar',
  treeRow: '.monaco-list-row',
  /** Webviews are two iframes deep: the host iframe (class webview, 'ready' once loaded) and #active-frame. */
  webviewOuter: 'iframe.webview.ready',
  webviewInner: '#active-frame',
  // Inside the dashboard webview (src/extension/dashboard.ts).
  dashboard: '#met-dashboard',
  dashStep: '#step',
  dashEpoch: '#epoch',
  dashLossChart: '#loss-chart',
  dashExitRows: '#exit-rows tr[data-exit]',
};
export const TEXT = {
  fineTuneCommand: 'MET: Fine-tune on folder',
  showDashboardCommand: 'MET: Show training dashboard',
  colorThemeCommand: 'Preferences: Color Theme',
  fineTuneSteps: ['(1/3)', '(2/3)', '(3/3)'],
  startItem: 'Start fine-tuning',
  runsViewContainer: 'MET',
  runsViewTitle: 'MET: Runs',
  statusBarPrefix: 'MET',
};
/** Screenshot name -> the theme's label in the picker and the workbench class of its kind. */
export const THEMES = {
  dark: { label: 'Dark Modern', kind: 'vs-dark' },
  light: { label: 'Light Modern', kind: 'vs' },
  'high-contrast': { label: 'Dark High Contrast', kind: 'hc-black' },
};

// ---- Helper library -----------------------------------------------------------------------------
/** @typedef {import('./host.mjs').Page} Page */
/** @typedef {{ label: string, kind: string }} Theme */

/**
 * Waits until the workbench is interactive (explorer/status bar rendered).
 * @param {Page} page
 */
export async function waitForWorkbench(page, timeout = 60_000) {
  await page.locator(SEL.workbench).waitFor({ timeout });
  await page.locator(SEL.statusBar).waitFor({ timeout });
}

/**
 * F1, type `>title`, select the command whose label is exactly `title` (fuzzy matching may rank others first), Enter.
 * @param {Page} page
 * @param {string} title
 */
export async function runCommand(page, title, timeout = 20_000) {
  await page.keyboard.press('F1');
  const input = page.locator(SEL.quickInputBox);
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(`>${title}`);
  await acceptQuickPickItem(page, title, timeout);
}

/**
 * Moves the quick pick's focus with the arrow keys to the row whose label is `label` (the row's
 * aria-label starts with it; keybindings or descriptions may follow) and presses Enter.
 */
/**
 * Runs a palette command, retrying while the extension is still activating (the command is not listed yet).
 * @param {Page} page
 * @param {string} title
 */
export async function commandWhenAvailable(page, title, timeout = 120_000) {
  await until(
    `'${title}' to be available`,
    async () => {
      await runCommand(page, title, 5000).catch(async (/** @type {unknown} */ e) => {
        await page.keyboard.press('Escape');
        throw e;
      });
      return true;
    },
    { timeout, interval: 1000 },
  );
}

/**
 * @param {Page} page
 * @param {string} label
 */
export async function acceptQuickPickItem(page, label, timeout = 20_000) {
  const re = new RegExp(`^(?:\\$\\([\\w~-]+\\) )?${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:$|[,\\s])`);
  /** @type {{ label: string, focused: boolean, top: number }[]} */
  let rows = [];
  await until(
    `'${label}' to be the focused quick-pick item`,
    async () => {
      rows = await page.$$eval(SEL.quickInputRows, (/** @type {Element[]} */ els) =>
        els.map((e) => ({
          label: e.getAttribute('aria-label') ?? '',
          focused: e.classList.contains('focused'),
          top: e.getBoundingClientRect().top,
        })),
      );
      rows.sort((a, b) => a.top - b.top);
      const target = rows.findIndex((r) => re.test(r.label));
      const focused = rows.findIndex((r) => r.focused);
      if (target < 0 || focused < 0) return false;
      if (target === focused) return true;
      await page.keyboard.press(target > focused ? 'ArrowDown' : 'ArrowUp');
      return false;
    },
    { timeout, interval: 100 },
  ).catch((/** @type {Error} */ e) => {
    throw new Error(`${e.message}; rows: ${JSON.stringify(rows.map((r) => (r.focused ? `*${r.label}` : r.label)))}`);
  });
  await page.keyboard.press('Enter');
}

/**
 * Waits for a quick pick whose title contains `titlePart`; returns the labels of its first rows.
 * @param {Page} page
 * @param {string} titlePart
 * @returns {Promise<string[]>}
 */
export async function waitForQuickPick(page, titlePart, timeout = 60_000) {
  await page.locator(SEL.quickInputTitle, { hasText: titlePart }).waitFor({ state: 'visible', timeout });
  // Items arrive after the title when the extension computes them.
  await page.locator(SEL.quickInputFocused).first().waitFor({ timeout });
  return page.locator(SEL.quickInputRows).allInnerTexts();
}

/**
 * The webview's document (two iframes deep) as a FrameLocator; `title` picks the tab's webview when several are open.
 * @param {Page} page
 */
export function webview(page) {
  return page.frameLocator(SEL.webviewOuter).frameLocator(SEL.webviewInner);
}

/**
 * Polls fn() until it returns a truthy value; throws with `what` and the last value on timeout.
 * @template T
 * @param {string} what
 * @param {() => T | Promise<T>} fn
 * @param {{ timeout?: number, interval?: number }} options
 * @returns {Promise<T>}
 */
export async function until(what, fn, { timeout = 60_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  /** @type {unknown} */
  let last;
  for (;;) {
    try {
      const value = await fn();
      last = value;
      if (value) return value;
    } catch (e) {
      last = /** @type {Error} */ (e)?.message ?? e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Switches the colour theme as a user does: "Preferences: Color Theme", pick the theme by its
 * label, Enter; the workbench writes workbench.colorTheme into the user settings. (Editing
 * settings.json on disk instead is not picked up by code-server's web workbench while it runs,
 * measured: nothing changed in 20 s; and an Extension Development Host window (--dev) does not
 * read the profile's settings at all.) Returns the value the workbench wrote to settings.json.
 * @param {Page} page
 * @param {string} userDataDir
 * @param {Theme} theme
 */
export async function setTheme(page, userDataDir, theme) {
  await runCommand(page, TEXT.colorThemeCommand);
  // The picker previews themes as the focus moves; filter first so the list is short. Wait for
  // its input box only: opened while a high-contrast theme is active, the list is scrolled to the
  // bottom (its "Browse Additional Color Themes" row off screen) and the picker has no title
  // element in VS Code 1.139 (measured), so waiting for either times out.
  await page.locator(SEL.quickInputBox).waitFor({ state: 'visible', timeout: 10_000 });
  await page.locator(SEL.quickInputBox).fill(theme.label);
  await acceptQuickPickItem(page, theme.label, 10_000);
  await waitForThemeKind(page, theme);
  const file = path.join(userDataDir, 'User', 'settings.json');
  return until(
    `workbench.colorTheme in ${file}`,
    () => {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8'))['workbench.colorTheme'];
      } catch {
        return undefined;
      }
    },
    { timeout: 5000 },
  ).catch(() => '(not written)');
}

/**
 * The workbench's root element carries the theme kind as a class (vs, vs-dark, hc-black, hc-light).
 * @param {Page} page
 * @param {Theme} theme
 */
export async function waitForThemeKind(page, theme) {
  await until(
    `the workbench to show ${theme.label} (${theme.kind})`,
    () =>
      page.evaluate(
        (/** @type {string} */ c) => document.querySelector('.monaco-workbench')?.classList.contains(c),
        theme.kind,
      ),
    { timeout: 30_000 },
  );
  // Webviews get the theme's CSS variables by message, after the workbench repaints.
  await new Promise((r) => setTimeout(r, 700));
}

/**
 * Shows the MET view container in the side bar: nothing to do when its title is on screen
 * (after a reload the side bar may come back with it, with the Explorer, or hidden); otherwise
 * its activity-bar icon, which toggles, hence the check first and after.
 * @param {Page} page
 */
export async function showRunsView(page) {
  const title = page.locator(SEL.sideBar).filter({ hasText: new RegExp(TEXT.runsViewTitle, 'i') });
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await title.isVisible()) return;
    await page.locator(`${SEL.activityBar} [aria-label^="${TEXT.runsViewContainer}"]`).first().click();
    await title.waitFor({ state: 'visible', timeout: 5000 }).catch(() => {});
  }
  if (!(await title.isVisible())) throw new Error(`the '${TEXT.runsViewTitle}' view did not show in the side bar`);
}

/**
 * Visible texts of the notification toasts (errors from the extension show here).
 * @param {Page} page
 * @returns {Promise<string[]>}
 */
export async function notifications(page) {
  return page
    .locator(SEL.notificationToast)
    .allInnerTexts()
    .catch(() => []);
}

// ---- The test ----------------------------------------------------------------------------------
/**
 * @param {string[]} argv
 * @param {string} name
 */
function opt(argv, name) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** @param {string} out */
function packageVsix(out) {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const hostBin = path.join(ROOT, '.vscode-host/host/node_modules/.bin');
  // npm run package when the project has it (vsce from devDependencies, else the host's vsce).
  /** @type {[string, string[]]} */
  const cmd = pkg.scripts?.package
    ? ['npm', ['run', '--silent', 'package', '--', '-o', out]]
    : [path.join(hostBin, 'vsce'), ['package', '--allow-missing-repository', '--skip-license', '-o', out]];
  const r = spawnSync(cmd[0], cmd[1], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, PATH: `${process.env.PATH}:${hostBin}` },
    timeout: 300_000,
  });
  if (r.status !== 0 || !fs.existsSync(out))
    throw new Error(`packaging the VSIX failed (${cmd[0]} ${cmd[1].join(' ')}):\n${r.stdout}\n${r.stderr}`);
}

async function main() {
  const argv = process.argv.slice(2);
  overallTimeout(Number(opt(argv, 'timeout') ?? process.env.MET_UI_TIMEOUT ?? 600) * 1000, 'ui');
  const env = requireHostEnv();
  const dev = argv.includes('--dev');
  const tmp = makeTmp('met-vscode-ui-');
  cleanupDir(tmp);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (/^ui-.*\.(png|log)$/.test(f)) fs.rmSync(path.join(ARTIFACTS, f));

  const userDataDir = path.join(tmp, 'user');
  const extensionsDir = path.join(tmp, 'extensions');
  fs.mkdirSync(extensionsDir, { recursive: true });
  writeUserSettings(userDataDir, {});

  if (!dev) {
    let vsix = opt(argv, 'vsix') ?? process.env.MET_VSIX;
    if (!vsix) {
      vsix = path.join(tmp, 'met.vsix');
      packageVsix(vsix);
      log(`packaged ${(fs.statSync(vsix).size / 1e6).toFixed(1)} MB VSIX`);
    }
    log(installVsix(env, { userDataDir, extensionsDir }, path.resolve(vsix)).split('\n').pop() ?? '');
  }

  // The workspace: 4 classes x 32 images, the tiny backbone, and a short schedule.
  const ws = makeWorkspace(path.join(tmp, 'workspace'), { perClass: 32 });
  fs.writeFileSync(
    path.join(ws.dir, 'met.config.json'),
    `${JSON.stringify(
      {
        data: 'shapes',
        weights: 'backbone/tiny-vit.safetensors',
        heads: 4,
        epochs: 15,
        batch: 8,
        lr: 0.005,
        warmupEpochs: 1,
        split: [60, 20, 20],
        threads: 1,
      },
      null,
      2,
    )}\n`,
  );
  log(`workspace ${ws.dir} (${ws.images} images)`);

  const server = await startServer(env, {
    userDataDir,
    extensionsDir,
    folder: ws.dir,
    smokeTestDriver: dev,
    logFile: path.join(tmp, 'code-server.log'),
  });
  const context = await launchBrowser(env, path.join(tmp, 'chromium'));
  const page = context.pages()[0] ?? (await context.newPage());
  const shot = screenshotter(page, 'ui-');

  try {
    await page.goto(workbenchUrl(server, ws.dir, dev ? [['extensionDevelopmentPath', ROOT]] : []));
    await waitForWorkbench(page);
    log('workbench ready');

    // 3. The command and its three quick picks.
    await commandWhenAvailable(page, TEXT.fineTuneCommand, 60_000);
    let rows = await waitForQuickPick(page, TEXT.fineTuneSteps[0]);
    if (!rows[0]?.includes('shapes'))
      throw new Error(
        `the first image folder offered is not the workspace's shapes/: ${JSON.stringify(rows.slice(0, 3))}`,
      );
    await page.keyboard.press('Enter');
    rows = await waitForQuickPick(page, TEXT.fineTuneSteps[1]);
    if (!rows[0]?.includes('tiny-vit.safetensors'))
      throw new Error(`the first backbone offered is not tiny-vit.safetensors: ${JSON.stringify(rows.slice(0, 3))}`);
    await page.keyboard.press('Enter');
    rows = await waitForQuickPick(page, TEXT.fineTuneSteps[2]);
    if (!rows[0]?.includes(TEXT.startItem))
      throw new Error(`the confirmation does not start with '${TEXT.startItem}': ${JSON.stringify(rows.slice(0, 3))}`);
    await page.keyboard.press('Enter');
    log('fine-tuning started from the command palette');

    // 4. The dashboard, from the status-bar item while the run trains.
    const item = page.locator(`${SEL.statusBar} [id$="met.training"]`).first();
    let opened = false;
    try {
      await item.waitFor({ state: 'visible', timeout: 60_000 });
      await item.click();
      opened = true;
      log(`opened the dashboard from the status bar ("${(await item.innerText()).trim()}")`);
    } catch (e) {
      log(
        `status-bar item not clickable (${/** @type {Error} */ (e).message.split('\n')[0]}); using "${TEXT.showDashboardCommand}"`,
      );
    }
    if (!opened) await runCommand(page, TEXT.showDashboardCommand);
    const dash = webview(page);
    await dash.locator(SEL.dashboard).waitFor({ timeout: 60_000 });
    /** @type {string[]} */
    const steps = [];
    const status = await until(
      'the dashboard to show the finished run',
      async () => {
        const s = await dash.locator(SEL.dashboard).getAttribute('data-status', { timeout: 2000 });
        const step = (await dash.locator(SEL.dashStep).innerText({ timeout: 2000 })).trim();
        if (step && steps[steps.length - 1] !== step) steps.push(step);
        return s === 'done' || s === 'failed' || s === 'stopped' ? s : false;
      },
      { timeout: 300_000, interval: 200 },
    );
    log(`dashboard status ${status}; step counter went ${steps.join(' -> ')}`);
    if (status !== 'done') throw new Error(`the run ended ${status}: ${JSON.stringify(await notifications(page))}`);
    // Live: the webview showed the counter at more than one value (not only the finished run read back).
    if (steps.length < 2)
      throw new Error(`the dashboard never updated while training (step texts: ${JSON.stringify(steps)})`);
    const polylines = await dash.locator(`${SEL.dashLossChart} polyline`).count();
    const exitRows = await dash.locator(SEL.dashExitRows).count();
    if (!polylines || !exitRows) throw new Error(`the dashboard has ${polylines} loss lines and ${exitRows} exit rows`);
    log(
      `dashboard: ${polylines} loss lines, ${exitRows} exit rows, epoch ${(await dash.locator(SEL.dashEpoch).innerText()).trim()}`,
    );

    // 5. The runs view: the run is listed as done.
    const runs = fs.readdirSync(path.join(ws.dir, '.met/runs'));
    if (runs.length !== 1) throw new Error(`expected one run in ${ws.dir}/.met/runs, found ${JSON.stringify(runs)}`);
    const runName = runs[0];
    await showRunsView(page);
    const row = page.locator(`${SEL.sideBar} ${SEL.treeRow}`, { hasText: runName });
    await row
      .first()
      .waitFor({ timeout: 30_000 })
      .catch(async () => {
        const listed = await page.locator(`${SEL.sideBar} ${SEL.treeRow}`).allInnerTexts();
        throw new Error(
          `the runs view does not list ${runName} (in ${ws.dir}/.met/runs) 30 s after the run finished; it lists ${JSON.stringify(listed)}`,
        );
      });
    let rowText = '';
    await until(
      'the run row to say done',
      async () => {
        // The description may be cut off with an ellipsis on screen; the row's aria-label has it all.
        rowText = `${await row.first().innerText()} | ${await row.first().getAttribute('aria-label')}`;
        return /\bdone\b/.test(rowText);
      },
      { timeout: 30_000 },
    ).catch((e) => {
      throw new Error(`${e.message}; row: ${JSON.stringify(rowText)}`);
    });
    log(`runs view row: ${rowText.replace(/\s+/g, ' ')}`);

    // 6. A window reload: the dashboard comes back (WebviewPanelSerializer) with the finished
    // run, and the runs view with its row.
    await page.reload();
    await waitForWorkbench(page);
    // The side bar may come back with the Explorer (view state is saved lazily): show the view again.
    await showRunsView(page);
    await until(
      'the dashboard to be restored after a window reload',
      async () => (await dash.locator(SEL.dashboard).getAttribute('data-status', { timeout: 2000 })) === 'done',
      { timeout: 60_000 },
    );
    await row.first().waitFor({ timeout: 30_000 });
    log('window reloaded: dashboard and runs view restored');

    // 7. Screenshots in each theme.
    for (const [name, theme] of Object.entries(THEMES)) {
      const written = await setTheme(page, userDataDir, theme);
      await dash.locator(SEL.dashboard).waitFor();
      await page.mouse.move(700, 880);
      // Charts and the webview's theme variables settle after the first paint.
      await new Promise((r) => setTimeout(r, 800));
      await shot(name);
      log(`  (workbench.colorTheme: ${JSON.stringify(written)})`);
    }
    log('UI test passed');
    return 0;
  } catch (e) {
    console.error(`UI test failed: ${/** @type {Error} */ (e)?.stack ?? e}`);
    const toasts = await notifications(page);
    if (toasts.length) console.error(`notifications: ${JSON.stringify(toasts)}`);
    await shot('failure').catch(() => {});
    fs.copyFileSync(server.logFile, path.join(ARTIFACTS, 'ui-code-server.log'));
    console.error(`code-server log tail:\n${tail(server.logFile, 15)}`);
    return 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runMain(main);
}
