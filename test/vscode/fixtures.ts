// Shared by the CodeLens, runs-view and dashboard tests of the VS Code host suite (bundled into
// each test file: it is outside test/vscode/suite/, so it is no test of its own).
//
// The tiny run: a met.config.json in its own folder of the test workspace (data: the generated
// shapes, weights: the committed tiny ViT, 3 exits, 1 epoch) trained by the extension's CLI
// bundle (`dist/cli.js train --config FILE`) in a child process, as a user does in a terminal.
// It is made once per extension host: the promise lives on globalThis, which every test bundle
// in the host shares (module state does not: each bundle has its own copy of this file).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

export const EXTENSION_ID = 'met-tools.met-vscode';

export function extension(): vscode.Extension<unknown> {
  const ext = vscode.extensions.getExtension(EXTENSION_ID);
  if (!ext) throw new Error(`extension ${EXTENSION_ID} is not installed in this host`);
  return ext;
}

export async function activate(): Promise<vscode.Extension<unknown>> {
  const ext = extension();
  await ext.activate();
  return ext;
}

export function workspaceDir(): string {
  const ws = process.env.MET_TEST_WORKSPACE ?? vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!ws) throw new Error('no workspace folder is open (the launcher opens MET_TEST_WORKSPACE)');
  return ws;
}

export function dataDir(): string {
  const d = process.env.MET_TEST_DATA ?? path.join(workspaceDir(), 'shapes');
  if (!fs.existsSync(d)) throw new Error(`no test image folder at ${d} (MET_TEST_DATA)`);
  return d;
}

export function backbone(): string {
  const b =
    process.env.MET_TEST_BACKBONE ?? path.join(extension().extensionPath, 'assets', 'tiny-vit', 'tiny-vit.safetensors');
  if (!fs.existsSync(b)) throw new Error(`no tiny backbone at ${b} (MET_TEST_BACKBONE)`);
  return b;
}

/** `node dist/cli.js ARGS` of the extension under test, in a child process (never blocks the host). */
export function met(
  args: string[],
  cwd: string,
  timeoutMs = 300_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = path.join(extension().extensionPath, 'dist', 'cli.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `met params --config FILE --json`, parsed. */
export async function metParams(configFile: string): Promise<ParamsJson> {
  const r = await met(['params', '--config', configFile, '--json'], path.dirname(configFile), 120_000);
  if (r.code !== 0) throw new Error(`met params --config ${configFile} failed (${r.code}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as ParamsJson;
}

export interface ParamsJson {
  trainable: number;
  backbone: number;
  trainable_percent: number;
  exits: { exit: number; layer: number; gflops: number }[];
}

/** Writes a config for the tiny backbone and the test images into `<workspace>/<folder>/<name>`. */
export function writeConfig(folder: string, name = 'met.config.json', settings: Record<string, unknown> = {}): string {
  const dir = path.join(workspaceDir(), folder);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  const rel = (p: string) => path.relative(dir, p).split(path.sep).join('/');
  const body = {
    data: rel(dataDir()),
    weights: rel(backbone()),
    // The tiny ViT's head count cannot be read off its tensor shapes (see assets/tiny-vit/README.md).
    heads: 4,
    exits: [2, 4, 6],
    epochs: 1,
    batch: 16,
    threads: 1,
    ...settings,
  };
  fs.writeFileSync(
    file,
    `// written by the VS Code host tests (test/vscode/fixtures.ts)\n${JSON.stringify(body, null, 2)}\n`,
  );
  return file;
}

export interface TinyRun {
  configFile: string;
  runDir: string;
  summary: { exits: { exit: number; layer: number; accuracy: number | null; gflops: number }[] };
}

/** Trains a tiny run from `configFile` with the CLI (into <workspace>/.met/runs) and returns it. */
export async function trainWithCli(configFile: string): Promise<TinyRun> {
  const ws = workspaceDir();
  const runs = path.join(ws, '.met', 'runs');
  const before = new Set(fs.existsSync(runs) ? fs.readdirSync(runs) : []);
  const r = await met(['train', '--config', configFile], ws);
  if (r.code !== 0) throw new Error(`met train --config ${configFile} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  const made = fs.readdirSync(runs).filter((d) => !before.has(d));
  if (made.length !== 1) throw new Error(`expected one new run folder in ${runs}, found ${made.join(', ') || 'none'}`);
  const runDir = path.join(runs, made[0]);
  return { configFile, runDir, summary: JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8')) };
}

const KEY = Symbol.for('met.vscode-test.tinyRun');
/** The shared tiny run (trained on first use in this extension host). */
export function tinyRun(): Promise<TinyRun> {
  const g = globalThis as unknown as Record<symbol, Promise<TinyRun> | undefined>;
  g[KEY] ??= trainWithCli(writeConfig('tiny-run'));
  return g[KEY]!;
}

/** Polls `probe` until it returns something truthy; fails with `what` and the last value after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 20_000,
  everyMs = 150,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const v = await probe();
    if (v) return v;
    last = v;
    if (Date.now() > end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
