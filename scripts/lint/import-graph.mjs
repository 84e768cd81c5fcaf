// The project's import graph, read from the source with TypeScript's parser (every `import`,
// `import type`, `export … from`, `require()` and dynamic `import()`), with relative specifiers
// resolved to files. Shared by the cycle check (check-cycles.mjs) and the ESLint layer
// rule (eslint-rules.mjs), so both see the same edges.
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

const EXTENSIONS = ['.ts', '.tsx', '.mts', '.mjs', '.js'];

/**
 * Resolves a relative specifier from `fromFile` to a file, or null (a package, or missing).
 * @param {string} fromFile
 * @param {string} spec
 * @returns {string | null}
 */
export function resolveImport(fromFile, spec) {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(fromFile), spec);
  const candidates = [base, ...EXTENSIONS.map((e) => base + e), ...EXTENSIONS.map((e) => path.join(base, 'index' + e))];
  // `./x.js` written for ESM output may name a `.ts` file.
  if (/\.m?js$/.test(base)) candidates.push(base.replace(/\.m?js$/, '.ts'));
  for (const c of candidates) if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  return null;
}

/** @typedef {{ spec: string, typeOnly: boolean, line: number }} Import */

/** @type {Map<string, { mtimeMs: number, size: number, imports: Import[] }>} */
const cache = new Map();

/**
 * The module specifiers one source text imports, in order: [{ spec, typeOnly, line }]. Read from
 * TypeScript's syntax tree: static imports and re-exports, `import x = require()`, `require()`
 * calls and dynamic `import()` anywhere. `typeOnly` is true for a whole `import type` / `export
 * type` statement and for type positions (`typeof import('./x')`); an `import { type A }` with
 * only inline markers still loads the module under verbatimModuleSyntax, so it is a runtime edge.
 * @param {string} fileName
 * @param {string} text
 * @returns {Import[]}
 */
export function importsOfText(fileName, text) {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, scriptKind(fileName));
  /** @type {Import[]} */
  const imports = [];
  /** @type {(lit: ts.Node | undefined, typeOnly: boolean) => void} */
  const add = (lit, typeOnly) => {
    if (!lit || !ts.isStringLiteralLike(lit)) return;
    const line = sf.getLineAndCharacterOfPosition(lit.getStart(sf)).line + 1;
    imports.push({ spec: lit.text, typeOnly, line });
  };
  /** @type {(node: ts.Node) => void} */
  const visit = (node) => {
    if (ts.isImportDeclaration(node)) add(node.moduleSpecifier, !!node.importClause?.isTypeOnly);
    else if (ts.isExportDeclaration(node)) add(node.moduleSpecifier, node.isTypeOnly);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      add(node.moduleReference.expression, node.isTypeOnly);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal, true);
    else if (ts.isCallExpression(node) && node.arguments.length >= 1) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], false);
      else if (ts.isIdentifier(callee) && callee.text === 'require') add(node.arguments[0], false);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return imports;
}

/** @param {string} fileName */
function scriptKind(fileName) {
  if (/\.tsx$/.test(fileName)) return ts.ScriptKind.TSX;
  if (/\.m?ts$/.test(fileName)) return ts.ScriptKind.TS;
  return ts.ScriptKind.JS;
}

/**
 * The import specifiers of one file on disk (see importsOfText). Cached by path and mtime.
 * @param {string} file
 * @returns {Import[]}
 */
export function importsOf(file) {
  const stat = fs.statSync(file);
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) return hit.imports;
  const imports = importsOfText(file, fs.readFileSync(file, 'utf8'));
  cache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, imports });
  return imports;
}

/**
 * Every source file under the given roots (relative to `root`), skipping fixtures and builds.
 * @param {string} root
 * @param {string[]} dirs
 * @returns {string[]}
 */
export function sourceFiles(root, dirs) {
  /** @type {string[]} */
  const out = [];
  /** @param {string} dir */
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
  for (const d of dirs) walk(path.resolve(root, d));
  return out.sort();
}

/** @typedef {Map<string, string[]>} Graph */

/**
 * file -> resolved files it imports (relative imports only).
 * @param {string[]} files
 * @returns {Graph}
 */
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

/**
 * Strongly connected components with more than one file, or a file importing itself (Tarjan).
 * @param {Graph} graph
 * @returns {string[][]}
 */
export function findCycles(graph) {
  let index = 0;
  /** @type {Map<string, number>} */
  const idx = new Map();
  /** @type {Map<string, number>} */
  const low = new Map();
  const onStack = new Set();
  /** @type {string[]} */
  const stack = [];
  /** @type {string[][]} */
  const cycles = [];
  /** @type {(m: Map<string, number>, k: string) => number} */
  const num = (m, k) => m.get(k) ?? 0;
  /** @param {string} v */
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
        low.set(v, Math.min(num(low, v), num(low, w)));
      } else if (onStack.has(w)) low.set(v, Math.min(num(low, v), num(idx, w)));
    }
    if (low.get(v) === idx.get(v)) {
      /** @type {string[]} */
      const comp = [];
      let w;
      do {
        w = /** @type {string} */ (stack.pop());
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return cycles;
}

/**
 * One shortest import path a -> … -> a inside a component, to show a reader the circle.
 * @param {Graph} graph
 * @param {string[]} comp
 * @returns {string[]}
 */
export function exampleCircle(graph, comp) {
  const inComp = new Set(comp);
  const start = comp[0];
  /** @type {Map<string, string | null>} */
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = /** @type {string} */ (queue.shift());
    for (const w of graph.get(v) ?? []) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const pathBack = [start];
        for (let u = /** @type {string | null} */ (v); u !== null; u = prev.get(u) ?? null) pathBack.push(u);
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
