// Entry point of the integration suite that runs INSIDE a real VS Code extension host
// (extensionTestsPath). Launched by test/vscode/host/run-suite.mjs (code-server + Chromium) or
// test/vscode/electron.mjs (@vscode/test-electron, desktop VS Code). Both point the host at
// dist/test/vscode/suite/index.js, built by esbuild.mjs from every test/vscode/suite/*.ts.
//
// Writing a test: add test/vscode/suite/<name>.test.ts using mocha's tdd globals (suite, test,
// suiteSetup, ...). Drive the extension the way a user does, through `vscode.commands` and the
// workspace, or through the extension's `exports`. Do not import src/extension/** modules into a
// test: each test file is its own bundle, so it would get a second copy of those modules (a
// different EventEmitter in trainingEvents.ts, other module state), not the one the extension runs.
//
// Environment (set by the launchers; read with process.env in tests):
//   MET_TEST_WORKSPACE  the opened workspace folder (a fresh temp dir per run)
//   MET_TEST_DATA       an image folder with class sub-folders inside it (generated shapes)
//   MET_TEST_BACKBONE   the committed tiny backbone (assets/tiny-vit/tiny-vit.safetensors)
//   MET_TEST_GREP       only tests whose full title matches this regular expression
//   MET_TEST_TIMEOUT    default per-test timeout in ms (30000; slow tests call this.timeout())
//   MET_TEST_RELOAD_FILE  set by run-suite.mjs --reload: run only *.reload.test.js, which reload
//                       the window once (the file says what the window before the reload did)
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as util from 'node:util';
import Mocha from 'mocha';

/**
 * In code-server the extension host's console reaches the launcher only as lines of the
 * workbench's log, mixed with the workbench's own messages. run-suite.mjs sets
 * MET_TEST_OUTPUT_MARKER and prints only the lines that start with it: mocha's report. (The
 * extension host makes console.* non-writable, so only mocha's own writer can be wrapped; other
 * console output of tests shows with run-suite.mjs --verbose.)
 */
function markReporterOutput(marker: string): void {
  const log = console.log;
  Mocha.reporters.Base.consoleLog = (...args: unknown[]) =>
    log(
      util
        .format(...args)
        .split('\n')
        .map((l) => marker + l)
        .join('\n'),
    );
}

export async function run(): Promise<void> {
  if (process.env.MET_TEST_OUTPUT_MARKER) markReporterOutput(process.env.MET_TEST_OUTPUT_MARKER);
  const mocha = new Mocha({
    ui: 'tdd',
    // The output travels through the workbench's log as plain text (no terminal): no colours.
    color: false,
    timeout: Number(process.env.MET_TEST_TIMEOUT) || 30_000,
    ...(process.env.MET_TEST_GREP ? { grep: new RegExp(process.env.MET_TEST_GREP) } : {}),
  });
  // *.reload.test.js reload the window in the middle (run-suite.mjs --reload, which sets
  // MET_TEST_RELOAD_FILE): they run alone, and only then.
  const reload = !!process.env.MET_TEST_RELOAD_FILE;
  const files = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.test.js') && f.endsWith('.reload.test.js') === reload)
    .sort();
  if (!files.length) throw new Error(`no *.test.js files next to ${__filename} (run node esbuild.mjs)`);
  for (const f of files) mocha.addFile(path.join(__dirname, f));
  const failures = await new Promise<number>((resolve, reject) => {
    try {
      mocha.run(resolve);
    } catch (e) {
      reject(e);
    }
  });
  // Rejecting is how the host learns the suite failed: the workbench then exits with code 1.
  if (failures > 0) throw new Error(`${failures} of the VS Code host tests failed`);
}
