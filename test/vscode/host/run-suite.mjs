// Runs the mocha integration suite (dist/test/vscode/suite/index.js, built from
// test/vscode/suite/*.ts by esbuild.mjs) inside a real VS Code extension host: code-server with
// the smoke-test driver enabled, a headless Chromium workbench opened with the `payload` URL
// parameter (extensionDevelopmentPath = this repository, extensionTestsPath = the suite). The
// extension host's mocha output is printed; the exit code is the suite's (0 all passed, 1 a
// failure), 124 on the overall timeout, 2 when the host is not installed.
//
// Usage: node test/vscode/host/run-suite.mjs [--grep REGEX] [--workspace DIR] [--timeout SEC] [--restricted] [--reload] [--verbose]
//   --reload runs the *.reload.test.ts files instead of the others: they reload the window in the
//   middle (workbench.action.reloadWindow), and the suite runs again in the reloaded window,
//   which finds what the first window did in MET_TEST_RELOAD_FILE. The result is the second
//   run's; a suite that never reloaded fails.
//   --restricted keeps Workspace Trust on, so the generated workspace opens in Restricted Mode
//   (the Workspace Trust suite's refusal test runs only there; every other launch trusts it).
//   npm run test:vscode [-- --grep CodeLens]
//
// The workspace: by default a fresh temp folder with shapes/<class>/*.png (4 classes x 12
// generated images) and backbone/tiny-vit.safetensors, so the tests can fine-tune without
// writing their own data; its paths reach the tests as MET_TEST_WORKSPACE / MET_TEST_DATA /
// MET_TEST_BACKBONE (code-server's environment is the extension host's). --workspace DIR opens
// an existing folder instead (MET_TEST_DATA is then unset unless DIR/shapes exists).
// Everything else (user data, extensions dir, browser profile) is fresh per run and removed at
// the end (MET_KEEP_TMP=1 keeps it). On failure the workbench's logs (extension host, server,
// window) are saved under test-artifacts/vscode-suite/.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as util from 'node:util';
import {
  ARTIFACTS,
  ROOT,
  cleanupDir,
  finish,
  launchBrowser,
  log,
  makeTmp,
  makeWorkspace,
  overallTimeout,
  requireHostEnv,
  startServer,
  tail,
  workbenchUrl,
  writeUserSettings,
} from './host.mjs';

const argv = process.argv.slice(2);
/** @param {string} name */
function opt(name) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
const verbose = argv.includes('--verbose') || process.env.MET_VSCODE_VERBOSE === '1';
const timeoutS = Number(opt('timeout') ?? process.env.MET_VSCODE_TIMEOUT ?? 900);
overallTimeout(timeoutS * 1000, 'run-suite');

const env = requireHostEnv();
/** Prefix of the suite's console lines in the workbench log (see printTestOutput). */
const MARKER = '\u2063met-test\u2063 ';
const suiteIndex = path.join(ROOT, 'dist/test/vscode/suite/index.js');
for (const f of [suiteIndex, path.join(ROOT, 'dist/extension.js')]) {
  if (!fs.existsSync(f)) {
    console.error(
      `error: ${path.relative(ROOT, f)} is missing: run node esbuild.mjs (npm run test:vscode builds first)`,
    );
    process.exit(2);
  }
}

const tmp = makeTmp('met-vscode-suite-');
cleanupDir(tmp);
log(`temp dir ${tmp}`);

let workspace = opt('workspace') && path.resolve(/** @type {string} */ (opt('workspace')));
/** @type {Record<string, string>} */
const testEnv = {};
if (workspace) {
  if (!fs.statSync(workspace, { throwIfNoEntry: false })?.isDirectory()) {
    console.error(`error: --workspace ${workspace} is not a folder`);
    await finish(2);
  }
  if (fs.existsSync(path.join(workspace, 'shapes'))) testEnv.MET_TEST_DATA = path.join(workspace, 'shapes');
} else {
  const ws = makeWorkspace(path.join(tmp, 'workspace'));
  workspace = ws.dir;
  testEnv.MET_TEST_DATA = ws.data;
  log(`workspace ${workspace} (${ws.images} generated images)`);
}
Object.assign(testEnv, {
  MET_TEST_WORKSPACE: workspace,
  MET_TEST_BACKBONE: path.join(ROOT, 'assets/tiny-vit/tiny-vit.safetensors'),
  MET_VSCODE_TEST: '1',
  MET_TEST_OUTPUT_MARKER: MARKER,
});
// Tells the Workspace Trust suite that it must find the workspace untrusted (not skip).
if (argv.includes('--restricted')) testEnv.MET_TEST_RESTRICTED = '1';
const reloadFile = argv.includes('--reload') ? path.join(tmp, 'reload.json') : undefined;
if (reloadFile) testEnv.MET_TEST_RELOAD_FILE = reloadFile;
const grep = opt('grep') ?? process.env.MET_TEST_GREP;
if (grep) testEnv.MET_TEST_GREP = grep;
if (process.env.MET_TEST_TIMEOUT) testEnv.MET_TEST_TIMEOUT = process.env.MET_TEST_TIMEOUT;

const userDataDir = path.join(tmp, 'user');
const extensionsDir = path.join(tmp, 'extensions');
writeUserSettings(userDataDir, {});
fs.mkdirSync(extensionsDir, { recursive: true });

let code = 1;
try {
  const server = await startServer(env, {
    userDataDir,
    extensionsDir,
    folder: workspace,
    smokeTestDriver: true,
    env: testEnv,
    logFile: path.join(tmp, 'code-server.log'),
    workspaceTrust: argv.includes('--restricted'),
  });
  log(`code-server on ${server.url} (pid group ${server.pid})`);
  const context = await launchBrowser(env, path.join(tmp, 'chromium'));
  const page = context.pages()[0] ?? (await context.newPage());

  /** @type {(code: number) => void} */
  let resolveExit = () => {};
  /** @type {Promise<number>} */
  const exited = new Promise((r) => (resolveExit = r));
  /** @type {LogFile[]} */
  let logs = [];
  // The workbench reports the extension host's exit (the suite's run() settled) with the code
  // and the content of every log file of the window.
  await page.exposeFunction('codeAutomationExit', (/** @type {number} */ c, /** @type {unknown} */ files) => {
    logs = Array.isArray(files) ? files : [];
    resolveExit(c);
  });
  // In extension-test mode the workbench's log goes here, and with it the extension host's
  // console (mocha's reporter). Workbench chatter is only shown with --verbose.
  await page.exposeFunction('codeAutomationLog', (/** @type {string} */ level, /** @type {unknown} */ args) => {
    const text = Array.isArray(args) ? util.format(...args) : String(args);
    if (verbose) process.stdout.write(`[${level}] ${text}\n`);
    else printTestOutput(text);
  });
  page.on('pageerror', (/** @type {Error} */ e) => verbose && log(`page error: ${e.message}`));
  page.on(
    'console',
    (/** @type {{ type(): string, text(): string }} */ m) =>
      verbose && process.stdout.write(`[console.${m.type()}] ${m.text()}\n`),
  );

  await page.goto(
    workbenchUrl(server, workspace, [
      ['extensionDevelopmentPath', ROOT],
      ['extensionTestsPath', suiteIndex],
    ]),
  );
  log('workbench opened; waiting for the suite');
  code = await exited;
  log(`extension host exited with code ${code}`);
  if (reloadFile && code === 0 && !fs.existsSync(reloadFile)) {
    console.error('error: --reload: the suite ended without reloading the window (no MET_TEST_RELOAD_FILE written)');
    code = 1;
  }
  if (code !== 0) saveLogs(logs, server.logFile);
} catch (e) {
  console.error(`error: ${/** @type {Error} */ (e)?.stack ?? e}`);
  code = 1;
}
await finish(code);

// The extension host's console arrives as messages of the window's log, mixed with the
// workbench's own (offline open-vsx errors and the like). The suite's index.ts marks every line
// its console prints while the tests run; print those, unmarked.
/** @param {string} text */
function printTestOutput(text) {
  for (const line of text.split('\n'))
    if (line.startsWith(MARKER)) process.stdout.write(`${line.slice(MARKER.length)}\n`);
}

/** @typedef {{ relativePath: string, contents: string }} LogFile */

/**
 * @param {LogFile[]} files
 * @param {string} serverLog
 */
function saveLogs(files, serverLog) {
  const dir = path.join(ARTIFACTS, 'vscode-suite');
  fs.rmSync(dir, { recursive: true, force: true });
  for (const f of files) {
    const out = path.join(dir, f.relativePath);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, f.contents);
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(serverLog, path.join(dir, 'code-server.log'));
  log(`logs saved in ${path.relative(ROOT, dir)}; code-server log tail:\n${tail(serverLog, 15)}`);
}
