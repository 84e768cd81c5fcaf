// The project's import graph, read from the source with TypeScript's own pre-processor (every
// `import`, `import type`, `export … from`, `require()` and dynamic `import()`), with relative
// specifiers resolved to files. Shared by the cycle check (check-cycles.mjs) and the ESLint layer
// rule (eslint-rules.mjs), so both see the same edges.
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

const EXTENSIONS = ['.ts', '.tsx', '.mts', '.mjs', '.js'];

/** Resolves a relative specifier from `fromFile` to a file, or null (a package, or missing). */
export function resolveImport(fromFile, spec) {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(fromFile), spec);
  const candidates = [base, ...EXTENSIONS.map((e) => base + e), ...EXTENSIONS.map((e) => path.join(base, 'index' + e))];
  // `./x.js` written for ESM output may name a `.ts` file.
  if (/\.m?js$/.test(base)) candidates.push(base.replace(/\.m?js$/, '.ts'));
  for (const c of candidates) if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  return null;
}

const cache = new Map();

/** The import specifiers of one file: [{ spec, typeOnly }]. Cached by path and mtime. */
export function importsOf(file) {
  const stat = fs.statSync(file);
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === stat.mtimeMs) return hit.imports;
  const text = fs.readFileSync(file, 'utf8');
  const info = ts.preProcessFile(text, true, true);
  const typeOnly = new Set();
  // preProcessFile does not say which imports are type-only; an `import type` / `export type`
  // statement is recognised here (inline `type` markers on some names still load the module).
  for (const m of text.matchAll(/^\s*(?:import|export)\s+type\s[^;]*?from\s+['"]([^'"]+)['"]/gms)) typeOnly.add(m[1]);
  const imports = info.importedFiles.map((f) => ({ spec: f.fileName, typeOnly: typeOnly.has(f.fileName) }));
  cache.set(file, { mtimeMs: stat.mtimeMs, imports });
  return imports;
}

/** Every source file under the given roots (relative to `root`), skipping fixtures and builds. */
export function sourceFiles(root, dirs) {
  const out = [];
  const walk = (dir) => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!['node_modules', 'dist', 'fixtures', '.vscode-host', '.cache'].includes(e.name) && !e.name.startsWith('.'))
          walk(p);
      } else if (/\.(ts|mts|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
    }
  };
  for (const d of dirs) walk(path.join(root, d));
  return out.sort();
}

/** file -> resolved files it imports (relative imports only). */
export function buildGraph(files) {
  const graph = new Map();
  for (const f of files) {
    const deps = [];
    for (const { spec } of importsOf(f)) {
      const r = resolveImport(f, spec);
      if (r) deps.push(r);
    }
    graph.set(f, [...new Set(deps)]);
  }
  return graph;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
export function findCycles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const cycles = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return cycles;
}

/** One shortest import path a -> … -> a inside a component, to show a reader the circle. */
export function exampleCircle(graph, comp) {
  const inComp = new Set(comp);
  const start = comp[0];
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const pathBack = [start];
        for (let u = v; u !== null; u = prev.get(u)) pathBack.push(u);
        return pathBack.reverse();
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return comp;
}
