// `npm run lint` step: fails when any import circle exists among the project's sources (type-only
// imports count: a circle of types is still two modules that cannot be understood apart).
// Usage: node scripts/lint/check-cycles.mjs [dir …]   (default: src webview-ui test bench scripts examples)
import * as path from 'node:path';
import { buildGraph, exampleCircle, findCycles, sourceFiles } from './import-graph.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const dirs = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['src', 'webview-ui', 'test', 'bench', 'scripts', 'examples'];
const graph = buildGraph(sourceFiles(root, dirs));
const cycles = findCycles(graph);
/** @param {string} f */
const rel = (f) => path.relative(root, f);
if (cycles.length === 0) {
  console.log(`check-cycles: no import circles among ${graph.size} files`);
  process.exit(0);
}
console.error(`check-cycles: ${cycles.length} import circle(s):`);
for (const c of cycles) {
  console.error(`  ${exampleCircle(graph, c).map(rel).join(' -> ')}`);
  if (c.length > 2) console.error(`    (${c.length} files in this circle: ${c.map(rel).join(', ')})`);
}
process.exit(1);
