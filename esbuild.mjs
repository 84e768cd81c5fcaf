// Bundles the extension, the CLI / engine process and the benchmark.
// Native packages (onnxruntime-node, sharp) stay external: they load their .node binaries
// from node_modules at run time and ship as-is inside the VSIX.
import * as esbuild from 'esbuild';

const external = ['vscode', 'onnxruntime-node', 'sharp'];
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  external,
  logLevel: 'warning',
};

await Promise.all([
  esbuild.build({ ...common, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js' }),
  esbuild.build({ ...common, entryPoints: ['src/cli.ts'], outfile: 'dist/cli.js' }),
  esbuild.build({ ...common, entryPoints: ['bench/bench.ts'], outfile: 'dist/bench.js' }),
]);
