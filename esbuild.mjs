// Bundles the extension, the CLI / engine process and the benchmark.
// Native packages (onnxruntime-node, sharp) stay external: they load their .node binaries
// from node_modules at run time and ship as-is inside the VSIX.
import * as fs from 'node:fs';
import * as esbuild from 'esbuild';

const external = ['vscode', 'onnxruntime-node', 'sharp'];
/** @type {esbuild.BuildOptions} */
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  external,
  logLevel: 'warning',
};
/** The panels' webview scripts: browser bundles, each with the CSS it imports beside it.
 *  @type {esbuild.BuildOptions} */
const webview = {
  bundle: true,
  platform: 'browser',
  target: 'es2022',
  format: 'iife',
  sourcemap: true,
  logLevel: 'warning',
};

await Promise.all([
  esbuild.build({ ...common, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js' }),
  esbuild.build({ ...common, entryPoints: ['src/cli.ts'], outfile: 'dist/cli.js' }),
  esbuild.build({ ...common, entryPoints: ['bench/bench.ts'], outfile: 'dist/bench.js' }),
  // The training dashboard's webview script (+ its CSS, imported by it: dist/webview/dashboard.css).
  esbuild.build({ ...webview, entryPoints: ['webview-ui/dashboard/main.ts'], outfile: 'dist/webview/dashboard.js' }),
  // The similarity-matrices and parameter-counts panels (+ their CSS: dist/webview/{similarity,params}.css).
  esbuild.build({ ...webview, entryPoints: ['webview-ui/similarity/main.ts'], outfile: 'dist/webview/similarity.js' }),
  esbuild.build({ ...webview, entryPoints: ['webview-ui/params/main.ts'], outfile: 'dist/webview/params.js' }),
  // Compare runs (+ dist/webview/compare.css).
  esbuild.build({ ...webview, entryPoints: ['webview-ui/compare/main.ts'], outfile: 'dist/webview/compare.js' }),
  // Inspect exits (+ dist/webview/inspect.css); bundles the engine's pure threshold maths for the
  // budget slider. Two builds: the production one without the test hooks (MET_TEST_HOOKS false:
  // the branch that installs them is dead code, and webview-ui/inspect/test-hooks.ts is dropped),
  // and dist/webview/inspect-test.js with them, which the extension loads only when it runs under
  // the integration tests (ExtensionMode.Test); the VSIX leaves it out (.vscodeignore).
  .../** @type {[string, boolean][]} */ ([
    ['dist/webview/inspect.js', false],
    ['dist/webview/inspect-test.js', true],
  ]).map(([outfile, hooks]) =>
    esbuild.build({
      ...webview,
      define: { MET_TEST_HOOKS: String(hooks) },
      // Folds `if (false) ...` away (identifiers and whitespace stay as they are).
      minifySyntax: true,
      entryPoints: ['webview-ui/inspect/main.ts'],
      outfile,
    }),
  ),
  // The VS Code host integration suite: index.js loads every *.test.js next to it, so bundles
  // whose source is gone are deleted afterwards (a deleted test must not keep running from a
  // stale bundle; pruning after the build, not emptying before it, keeps a suite that is starting
  // meanwhile intact). mocha stays external, required from node_modules (a devDependency) by the
  // extension host at run time.
  esbuild
    .build({
      ...common,
      external: [...external, 'mocha'],
      entryPoints: ['test/vscode/suite/*.ts'],
      outdir: 'dist/test/vscode/suite',
    })
    .then(() => {
      const sources = new Set(
        fs
          .readdirSync('test/vscode/suite')
          .filter((f) => f.endsWith('.ts'))
          .map((f) => f.slice(0, -3)),
      );
      for (const f of fs.readdirSync('dist/test/vscode/suite')) {
        if (!sources.has(f.replace(/\.js(\.map)?$/, ''))) fs.rmSync(`dist/test/vscode/suite/${f}`);
      }
    }),
]);
