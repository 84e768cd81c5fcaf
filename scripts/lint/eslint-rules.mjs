// ESLint plugin `met`: the layer rule (`met/layers`), which keeps the architecture's import
// directions. A layer is told by where a file lives; an import is judged by where its specifier
// lands once resolved (`../../cli/x` from src/engine/a/b.ts is src/cli/x), so the rule holds for
// folders that do not exist yet. Transitive purity (no path to sharp / onnxruntime-node) walks the
// same import graph as the cycle check (import-graph.mjs), through runtime edges only.
//
//   engine     src/engine/**          never vscode, protocol, cli, app, server, extension
//   app        src/app/**             never vscode, protocol, cli, server, extension
//   protocol   src/protocol.ts        only `import type`, and only of engine and app modules
//   server     src/server/**          never vscode, cli, extension
//   cli        src/cli/**, src/cli.ts never vscode, extension
//   extension  src/extension/**, src/extension.ts: runtime imports must be pure (no sharp/onnxruntime)
//   webview    webview-ui/**          pure as above, and never vscode, Node built-ins, extension, cli
//
// Inside the engine, folders have levels (ENGINE_LEVELS) and a module imports only from its own
// folder or from a lower level, type-only imports included: a type that points upward is the
// first step of an import circle.
import * as path from 'node:path';
import { builtinModules } from 'node:module';
import { importsOf, resolveImport } from './import-graph.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');

/** Packages whose native binaries must never load on the extension host or in a webview. */
const NATIVE = ['sharp', 'onnxruntime-node'];
const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith('_')));

/**
 * The layer of a project path (absolute, with or without extension), or null outside the layers.
 * @param {string} absPath
 * @returns {Layer | null}
 */
export function layerOf(absPath) {
  const rel = path.relative(ROOT, absPath).split(path.sep).join('/');
  const noExt = rel.replace(/\.(ts|tsx|mts|mjs|js)$/, '');
  const top = rel.split('/');
  if (top[0] === 'webview-ui') return 'webview';
  if (top[0] !== 'src') return null;
  if (noExt === 'src/protocol') return 'protocol';
  if (noExt === 'src/cli' || top[1] === 'cli') return 'cli';
  if (noExt === 'src/extension' || top[1] === 'extension') return 'extension';
  if (top.length > 2 && (top[1] === 'engine' || top[1] === 'app' || top[1] === 'server')) return top[1];
  return null;
}

/**
 * The engine's folders (and top-level modules) from the bottom up. A module may import from its
 * own folder and from any lower level, never from its level or above: settings and tensors know
 * no model, the model knows no trainer, the trainer knows no run folder, and the panels' engine
 * code (explore) sits on top of everything it reads.
 * @type {Record<string, number>}
 */
export const ENGINE_LEVELS = {
  tensor: 0,
  io: 0,
  settings: 0,
  graph: 1,
  data: 1,
  model: 2,
  weights: 3,
  runtime: 3,
  train: 4,
  infer: 4,
  run: 5,
  export: 6,
  explore: 6,
  demo: 6,
  study: 6,
};

/**
 * The engine folder (or top-level module name) of an absolute path under src/engine, else null.
 * @param {string} absPath
 */
export function engineUnitOf(absPath) {
  const parts = path.relative(path.join(ROOT, 'src', 'engine'), absPath).split(path.sep);
  if (parts[0] === '..' || parts.length === 0) return null;
  return parts[0].replace(/\.(ts|mts|mjs|js)$/, '');
}

/** @typedef {'engine' | 'app' | 'protocol' | 'server' | 'cli' | 'extension' | 'webview'} Layer */
/** @typedef {Layer | 'vscode' | 'node' | 'package' | 'other'} Kind */

/** @type {Record<Layer, string>} */
const LAYER_DESC = {
  engine: 'src/engine',
  app: 'src/app',
  protocol: 'src/protocol.ts',
  server: 'src/server',
  cli: 'src/cli',
  extension: 'src/extension',
  webview: 'webview-ui',
};

/** @type {Partial<Record<Kind, string>>} */
const TARGET_DESC = {
  ...LAYER_DESC,
  vscode: 'vscode',
  node: 'Node built-ins',
  protocol: 'the protocol (src/protocol.ts)',
};

// Why each layer keeps away from the others: one line each, used in the messages.
/** @type {Partial<Record<Layer, { targets: Kind[], why: string }>>} */
const FORBIDDEN = {
  engine: {
    targets: ['vscode', 'protocol', 'cli', 'app', 'server', 'extension'],
    why: 'the engine is the bottom layer, shared by the CLI, the engine server and the extension; it knows none of them',
  },
  app: {
    targets: ['vscode', 'protocol', 'cli', 'server', 'extension'],
    why: 'the application layer is shared by the CLI, the engine server and the extension; it sits below them and knows only the engine',
  },
  server: {
    targets: ['vscode', 'cli', 'extension'],
    why: 'the engine server runs in its own Node process; it may use the engine, the app layer and the protocol, never the CLI or the extension host',
  },
  cli: {
    targets: ['vscode', 'extension'],
    why: 'the CLI runs without VS Code',
  },
  webview: {
    targets: ['vscode', 'cli', 'extension', 'node'],
    why: 'webview scripts run in a browser sandbox: no Node, no vscode module, no extension-host or CLI code',
  },
};

/** @param {string} spec */
function pkgName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** @param {string} spec */
function isBuiltin(spec) {
  return spec.startsWith('node:') || BUILTINS.has(pkgName(spec));
}

/** @param {string} f */
const rel = (f) => path.relative(ROOT, f).split(path.sep).join('/');

/**
 * What a specifier imported from `fromFile` is, for the layer table: 'vscode', 'node' (a built-in),
 * a layer name, 'package' or 'other' (a project file outside the layers).
 * @param {string} fromFile
 * @param {string} spec
 * @returns {Kind}
 */
function targetKind(fromFile, spec) {
  if (spec === 'vscode') return 'vscode';
  if (isBuiltin(spec)) return 'node';
  if (!spec.startsWith('.')) return 'package';
  return layerOf(path.resolve(path.dirname(fromFile), spec)) ?? 'other';
}

/**
 * The shortest runtime import chain from `file` to a native package (sharp, onnxruntime-node),
 * or to vscode / a Node built-in too when `strict` (webviews): [file, …, package], or null.
 * @param {string} file
 * @param {boolean} strict
 * @returns {string[] | null}
 */
function impureChain(file, strict) {
  /** @param {string} spec */
  const bad = (spec) =>
    NATIVE.includes(pkgName(spec)) || (strict && (spec === 'vscode' || (!spec.startsWith('.') && isBuiltin(spec))));
  /** @type {Map<string, string | null>} */
  const prev = new Map([[file, null]]);
  const queue = [file];
  while (queue.length) {
    const f = /** @type {string} */ (queue.shift());
    let imports;
    try {
      imports = importsOf(f);
    } catch {
      continue;
    }
    for (const { spec, typeOnly } of imports) {
      if (typeOnly) continue;
      if (bad(spec)) {
        const chain = [spec];
        for (let u = /** @type {string | null} */ (f); u !== null; u = prev.get(u) ?? null) chain.unshift(rel(u));
        return chain;
      }
      const r = resolveImport(f, spec);
      if (r && !prev.has(r)) {
        prev.set(r, f);
        queue.push(r);
      }
    }
  }
  return null;
}

/** @typedef {{ node: any, spec: string, typeOnly: boolean }} Found */

/**
 * The import-like nodes of one file as ESLint sees it (ESTree plus typescript-eslint's TS nodes).
 * @param {any} node
 * @param {Found[]} out
 */
function collect(node, out) {
  /** @type {(n: any) => string | null} */
  const lit = (n) => (n && n.type === 'Literal' && typeof n.value === 'string' ? n.value : null);
  switch (node.type) {
    case 'ImportDeclaration':
      out.push({ node, spec: node.source.value, typeOnly: node.importKind === 'type' });
      break;
    case 'ExportNamedDeclaration':
    case 'ExportAllDeclaration':
      if (node.source) out.push({ node, spec: node.source.value, typeOnly: node.exportKind === 'type' });
      break;
    case 'TSImportEqualsDeclaration':
      if (node.moduleReference.type === 'TSExternalModuleReference') {
        const s = lit(node.moduleReference.expression);
        if (s) out.push({ node, spec: s, typeOnly: node.importKind === 'type' });
      }
      break;
    case 'ImportExpression': {
      const s = lit(node.source);
      if (s) out.push({ node, spec: s, typeOnly: false });
      break;
    }
    case 'CallExpression':
      if (node.callee.type === 'Identifier' && node.callee.name === 'require') {
        const s = lit(node.arguments[0]);
        if (s) out.push({ node, spec: s, typeOnly: false });
      }
      break;
    case 'TSImportType': {
      // `typeof import('./x')` / `import('./x').T`: a type position.
      const a = node.argument;
      const s = a?.type === 'TSLiteralType' ? lit(a.literal) : lit(a);
      if (s) out.push({ node, spec: s, typeOnly: true });
      break;
    }
  }
}

/** @type {import('eslint').Rule.RuleModule} */
const layers = {
  meta: {
    type: 'problem',
    docs: {
      description: "Keeps the architecture's layers: which module may import which (scripts/lint/eslint-rules.mjs)",
    },
    schema: [],
    messages: {
      forbidden: "layer rule: {{from}} never imports {{to}} ('{{spec}}' is {{what}}): {{why}}.",
      protocolRuntime:
        "layer rule (src/protocol.ts: type imports only): '{{spec}}' is imported at runtime; the protocol is shared by the extension host and the engine process and must load nothing, so write `import type`.",
      protocolTarget:
        "layer rule (src/protocol.ts imports only engine and app types): '{{spec}}' is {{what}}; the protocol sits between the extension host and the engine server and may name only the engine's and the app layer's types.",
      engineLevel:
        "layer rule (engine levels): {{from}} (level {{fromLevel}}) imports {{to}} (level {{toLevel}}) through '{{spec}}'; inside the engine a module imports only its own folder and lower levels ({{order}}), type imports too. Move the shared piece down, or invert the dependency.",
      engineUnknown:
        'layer rule (engine levels): src/engine/{{unit}} has no level; add it to ENGINE_LEVELS in scripts/lint/eslint-rules.mjs so its imports can be judged.',
      impure:
        "layer rule: {{from}} imports only pure modules at runtime, but '{{spec}}' loads {{pkg}} ({{chain}}); {{banned}}. Use `import type`, or a module that does not reach {{pkg}}.",
    },
  },
  create(context) {
    const file = context.physicalFilename ?? context.filename;
    const layer = layerOf(file);
    if (!layer) return {};
    /** @type {Found[]} */
    const found = [];
    /** @type {(kind: Kind, spec: string) => string} */
    const what = (kind, spec) =>
      kind === 'vscode'
        ? 'the vscode API'
        : kind === 'node'
          ? 'a Node built-in'
          : kind === 'protocol'
            ? 'the IPC protocol (src/protocol.ts)'
            : kind === 'package'
              ? `the package ${pkgName(spec)}`
              : kind === 'other'
                ? `${rel(path.resolve(path.dirname(file), spec))}, outside the engine and app layers`
                : `in the ${kind} layer (${LAYER_DESC[/** @type {Layer} */ (kind)]})`;
    /** @type {Record<string, (node: any) => void>} */
    const visitor = {};
    for (const t of [
      'ImportDeclaration',
      'ExportNamedDeclaration',
      'ExportAllDeclaration',
      'TSImportEqualsDeclaration',
      'ImportExpression',
      'CallExpression',
      'TSImportType',
    ])
      visitor[t] = (node) => collect(node, found);
    visitor['Program:exit'] = () => {
      for (const { node, spec, typeOnly } of found) {
        const kind = targetKind(file, spec);
        if (layer === 'protocol') {
          if (!typeOnly) context.report({ node, messageId: 'protocolRuntime', data: { spec } });
          else if (!['engine', 'app'].includes(kind))
            context.report({ node, messageId: 'protocolTarget', data: { spec, what: what(kind, spec) } });
          continue;
        }
        if (layer === 'engine' && kind === 'engine') {
          const from = engineUnitOf(file);
          const to = engineUnitOf(path.resolve(path.dirname(file), spec));
          if (from && to && from !== to) {
            const fromLevel = ENGINE_LEVELS[from];
            const toLevel = ENGINE_LEVELS[to];
            if (fromLevel === undefined || toLevel === undefined) {
              context.report({ node, messageId: 'engineUnknown', data: { unit: fromLevel === undefined ? from : to } });
            } else if (toLevel >= fromLevel) {
              const byLevel = Object.entries(ENGINE_LEVELS).reduce(
                (acc, [u, l]) => ((acc[l] = [...(acc[l] ?? []), u]), acc),
                /** @type {string[][]} */ ([]),
              );
              context.report({
                node,
                messageId: 'engineLevel',
                data: {
                  from: `src/engine/${from}`,
                  to: `src/engine/${to}`,
                  fromLevel: String(fromLevel),
                  toLevel: String(toLevel),
                  spec,
                  order: byLevel.map((u) => u.join(', ')).join(' < '),
                },
              });
            }
          }
          continue;
        }
        const rule = FORBIDDEN[layer];
        // Node built-ins are banned from webviews at runtime only: their types are harmless.
        if (rule && rule.targets.includes(kind) && !(kind === 'node' && typeOnly)) {
          context.report({
            node,
            messageId: 'forbidden',
            data: { from: LAYER_DESC[layer], to: TARGET_DESC[kind], spec, what: what(kind, spec), why: rule.why },
          });
          continue;
        }
        if ((layer === 'extension' || layer === 'webview') && !typeOnly) {
          const strict = layer === 'webview';
          let chain = null;
          if (NATIVE.includes(pkgName(spec))) chain = [rel(file), spec];
          else if (spec.startsWith('.')) {
            const r = resolveImport(file, spec);
            if (r) {
              const c = impureChain(r, strict);
              if (c) chain = [rel(file), ...c];
            }
          }
          if (chain) {
            const pkg = chain[chain.length - 1];
            context.report({
              node,
              messageId: 'impure',
              data: {
                from: LAYER_DESC[layer],
                spec,
                pkg,
                chain: chain.join(' → '),
                banned: strict
                  ? 'a webview runs in a browser: sharp, onnxruntime-node, vscode and Node built-ins cannot load there'
                  : 'the native sharp and onnxruntime-node must never load on the extension host (they run in the engine process)',
              },
            });
          }
        }
      }
    };
    return visitor;
  },
};

export default {
  meta: { name: 'met' },
  rules: { layers },
};
