// The same mocha suite as test/vscode/host/run-suite.mjs (dist/test/vscode/suite/index.js), in a
// desktop VS Code through @vscode/test-electron, for machines that have one:
//   VSCODE_EXECUTABLE=/path/to/code node test/vscode/electron.mjs      (after node esbuild.mjs)
//   on a Linux machine without a display: xvfb-run -a env VSCODE_EXECUTABLE=... node test/vscode/electron.mjs
// Without VSCODE_EXECUTABLE it prints why it cannot run and exits 0 ("skipped"): test-electron's
// own download (update.code.visualstudio.com) is unreachable on the project machines, and no npm
// or Debian package ships a desktop VS Code (see shared/docs/vscode-host-testing.md, section 1).
// The workspace is the same kind run-suite.mjs makes: generated shapes/ and the tiny backbone
// in a temp folder, announced to the tests through MET_TEST_* variables.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanupDir, finish, makeTmp, makeWorkspace, ROOT } from './host/host.mjs';

const exe = process.env.VSCODE_EXECUTABLE;
if (!exe) {
  console.log(
    'skipped: @vscode/test-electron needs a desktop VS Code. Set VSCODE_EXECUTABLE to its binary (e.g. /usr/share/code/code); ' +
      'it cannot be downloaded here (update.code.visualstudio.com is unreachable) and no npm or Debian package ships one. ' +
      'The same suite runs in code-server: npm run test:vscode.',
  );
  process.exit(0);
}
if (!fs.existsSync(exe)) {
  console.error(`error: VSCODE_EXECUTABLE=${exe} does not exist`);
  process.exit(1);
}
const suiteIndex = path.join(ROOT, 'dist/test/vscode/suite/index.js');
if (!fs.existsSync(suiteIndex)) {
  console.error(`error: ${path.relative(ROOT, suiteIndex)} is missing: run node esbuild.mjs`);
  process.exit(1);
}

const { runTests } = await import('@vscode/test-electron');
const tmp = makeTmp('met-vscode-electron-');
cleanupDir(tmp);
const ws = makeWorkspace(path.join(tmp, 'workspace'));
let code = 1;
try {
  code = await runTests({
    vscodeExecutablePath: exe,
    extensionDevelopmentPath: ROOT,
    extensionTestsPath: suiteIndex,
    launchArgs: [
      ws.dir,
      // Only this extension, a fresh profile. (runTests itself adds --no-sandbox, --disable-updates,
      // --skip-welcome, --skip-release-notes and --disable-workspace-trust.)
      '--disable-extensions',
      `--user-data-dir=${path.join(tmp, 'user')}`,
      `--extensions-dir=${path.join(tmp, 'extensions')}`,
      '--disable-telemetry',
      '--disable-gpu',
    ],
    extensionTestsEnv: {
      MET_TEST_WORKSPACE: ws.dir,
      MET_TEST_DATA: ws.data,
      MET_TEST_BACKBONE: path.join(ROOT, 'assets/tiny-vit/tiny-vit.safetensors'),
      MET_VSCODE_TEST: '1',
      ...(process.env.MET_TEST_GREP ? { MET_TEST_GREP: process.env.MET_TEST_GREP } : {}),
      ...(process.env.MET_TEST_TIMEOUT ? { MET_TEST_TIMEOUT: process.env.MET_TEST_TIMEOUT } : {}),
    },
  });
} catch (e) {
  // runTests rejects with the exit code (a failed suite) or an Error (could not start).
  console.error(`VS Code host tests failed: ${e?.message ?? e}`);
  code = typeof e?.code === 'number' && e.code !== 0 ? e.code : 1;
}
await finish(code);
