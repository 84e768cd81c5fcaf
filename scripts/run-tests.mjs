// `npm test` runs everything (after `npm run typecheck`, `npm run lint` and the build):
//   1. every test/**/*.test.ts with Node's test runner (Node 20's --test has no glob support);
//      test/vscode/ is not among them: those tests need the vscode API;
//   2. one VSIX per platform, packaged and checked for its binaries (scripts/package.mjs --all,
//      scripts/check-vsix.ts; the foreign sharp packages are fetched from the npm registry once);
//   3. the integration suite inside a real VS Code extension host (test/vscode/host/run-suite.mjs);
//   4. the UI tests in a real workbench (test/vscode/host/ui.mjs: packaged VSIX, command palette,
//      dashboard, runs view; panels-ui.mjs: the exploration panels), with
//      screenshots in test-artifacts/.
// 3 and 4 need the host from scripts/setup-vscode-host.sh (.vscode-host/); without it they are
// reported as skipped, unless MET_REQUIRE_VSCODE_HOST=1 (CI), where that is a failure.
// Extra arguments are file filters for the unit tests only (e.g. npm test -- weights); the host
// suites then do not run (npm run test:vscode / test:ui run them alone).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const filters = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'fixtures' && !e.name.startsWith('.') && p !== path.join(root, 'test', 'vscode')) walk(p);
    } else if (e.name.endsWith('.test.ts')) files.push(path.relative(root, p));
  }
})(path.join(root, 'test'));
const chosen = filters.length ? files.filter((f) => filters.some((x) => f.includes(x))) : files;
if (!chosen.length) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

const results = [];
/**
 * @param {string} name
 * @param {string} cmd
 * @param {string[]} args
 */
function step(name, cmd, args) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  const code = r.status ?? 1;
  results.push({
    name,
    ok: code === 0,
    text: `${code === 0 ? 'passed' : `FAILED (exit ${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  });
}

step('unit tests (node:test)', process.execPath, [
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  '--test-concurrency=1',
  ...chosen,
]);

if (!filters.length) {
  // One VSIX per platform, each checked for its own binaries only (issue 12). The foreign sharp
  // packages come from the npm registry once (cached in .cache/npm-packs/).
  const vsixDir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-vsix-'));
  console.log('\n# One VSIX per platform (scripts/package.mjs --all, scripts/check-vsix.ts)');
  step('VSIX per platform: package', process.execPath, [
    path.join(root, 'scripts/package.mjs'),
    '--all',
    '--out',
    vsixDir,
  ]);
  const made = fs.readdirSync(vsixDir).filter((f) => f.endsWith('.vsix'));
  step('VSIX per platform: binaries', process.execPath, [
    '--import',
    'tsx',
    path.join(root, 'scripts/check-vsix.ts'),
    ...made.map((f) => path.join(vsixDir, f)),
  ]);
  fs.rmSync(vsixDir, { recursive: true, force: true });

  const installed = fs.existsSync(path.join(root, '.vscode-host', 'env.json'));
  const required = process.env.MET_REQUIRE_VSCODE_HOST === '1';
  if (installed) {
    console.log('\n# VS Code extension host integration suite (test/vscode/host/run-suite.mjs)');
    step('VS Code host suite', process.execPath, [path.join(root, 'test/vscode/host/run-suite.mjs')]);
    console.log('\n# The Workspace Trust suite again, in Restricted Mode (run-suite.mjs --restricted)');
    step('VS Code host suite, Restricted Mode', process.execPath, [
      path.join(root, 'test/vscode/host/run-suite.mjs'),
      '--restricted',
      '--grep',
      'Workspace Trust',
    ]);
    console.log('\n# Reloading the window mid-training (run-suite.mjs --reload: *.reload.test.ts)');
    step('VS Code host suite, window reload', process.execPath, [
      path.join(root, 'test/vscode/host/run-suite.mjs'),
      '--reload',
    ]);
    console.log('\n# UI test in the workbench (test/vscode/host/ui.mjs)');
    step('UI test', process.execPath, [path.join(root, 'test/vscode/host/ui.mjs')]);
    console.log('\n# Exploration panels in the workbench (test/vscode/host/panels-ui.mjs)');
    step('UI test: exploration panels', process.execPath, [path.join(root, 'test/vscode/host/panels-ui.mjs')]);
  } else {
    const why = 'no VS Code test host in .vscode-host/: run scripts/setup-vscode-host.sh';
    for (const name of ['VS Code host suite', 'UI tests'])
      results.push({
        name,
        ok: !required,
        text: required ? `FAILED: ${why} (MET_REQUIRE_VSCODE_HOST=1)` : `skipped: ${why}`,
      });
  }
}

console.log('\n# summary');
for (const r of results) console.log(`${r.name}: ${r.text}`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
