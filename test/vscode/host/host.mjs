// A real VS Code host for tests: code-server 4.139.1 (VS Code 1.139.1's server + web workbench)
// on Node 24, driven by Debian's chromium through playwright-core; all installed by
// scripts/setup-vscode-host.sh into .vscode-host/ (see shared/docs/vscode-host-testing.md).
// Used by run-suite.mjs (mocha inside the extension host) and ui.mjs (workbench e2e).
//
// Every server gets a fresh user-data and extensions folder under one temp dir, its own free
// port and its own process group: code-server leaves fileWatcher / agentHost children behind if
// only its own pid is killed, so it is started detached (setsid) and the whole group is killed.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
export const HOST_DIR = path.join(ROOT, '.vscode-host');
export const ARTIFACTS = path.join(ROOT, 'test-artifacts');
export const EXTENSION_ID = 'met-tools.met-vscode';

/**
 * What scripts/setup-vscode-host.sh installed (.vscode-host/env.json): absolute paths.
 * @typedef {{ node: string, codeServer: string, codeServerConfig: string, playwright: string, chromium: string }} HostEnv
 */
/**
 * A playwright-core Page or BrowserContext: playwright-core is required from .vscode-host/ at run
 * time, so its types are not installed with the project.
 * @typedef {any} Page
 * @typedef {any} BrowserContext
 */
/**
 * A running code-server (startServer).
 * @typedef {{ url: string, port: number, authority: string, stop: () => Promise<void>, pid: number | undefined, logFile: string }} Server
 */

const t0 = Date.now();
/**
 * Progress line with seconds since the script started (the doc's budgets are per phase).
 * @param {string} msg
 */
export function log(msg) {
  process.stderr.write(`[vscode-host ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
}

/**
 * What setup-vscode-host.sh installed, or null with the reason.
 * @returns {{ env: HostEnv | null, why: string }}
 */
export function hostEnv() {
  const file = path.join(HOST_DIR, 'env.json');
  if (!fs.existsSync(file))
    return { env: null, why: `${path.relative(ROOT, file)} not found: run scripts/setup-vscode-host.sh` };
  const env = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const k of ['node', 'codeServer', 'codeServerConfig', 'playwright', 'chromium']) {
    if (!env[k] || !fs.existsSync(env[k]))
      return {
        env: null,
        why: `${k} (${env[k]}) from ${path.relative(ROOT, file)} is missing: run scripts/setup-vscode-host.sh`,
      };
  }
  return { env, why: '' };
}

/** @returns {HostEnv} */
export function requireHostEnv() {
  const { env, why } = hostEnv();
  if (!env) {
    console.error(`error: ${why}`);
    process.exit(2);
  }
  return env;
}

/** @returns {Promise<number>} */
async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** User settings of every test profile (doc gotcha 6: no startup editor, no update or network checks, no AI features). */
export const BASE_SETTINGS = {
  'workbench.startupEditor': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'telemetry.telemetryLevel': 'off',
  'chat.disableAIFeatures': true,
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'update.mode': 'none',
  // The secondary side bar (chat) would take a third of the screenshots.
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
};

/**
 * A temp dir that cleanup() removes; keep it with MET_KEEP_TMP=1 (its path is logged).
 * @param {string} prefix
 */
export function makeTmp(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * @param {string} userDataDir
 * @param {Record<string, unknown>} settings
 */
export function writeUserSettings(userDataDir, settings) {
  const dir = path.join(userDataDir, 'User');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'settings.json'), JSON.stringify({ ...BASE_SETTINGS, ...settings }, null, 2));
}

/**
 * @param {HostEnv} env
 * @param {string} userDataDir
 * @param {string} extensionsDir
 */
function csArgs(env, userDataDir, extensionsDir) {
  // --config always: without it code-server (even --version) writes ~/.config/code-server/config.yaml.
  return [
    env.codeServer,
    '--config',
    env.codeServerConfig,
    '--user-data-dir',
    userDataDir,
    '--extensions-dir',
    extensionsDir,
  ];
}

/**
 * @param {HostEnv} env
 * @param {NodeJS.ProcessEnv} extra
 */
function hostProcessEnv(env, extra) {
  // Node 24 first: code-server and everything it spawns (extension host, and the engine process
  // the extension forks with process.execPath) run on it.
  return { ...process.env, PATH: `${path.dirname(env.node)}:${process.env.PATH}`, ...extra };
}

/**
 * `code-server --install-extension <vsix>` into the given profile (0.6-0.9 s).
 * @param {HostEnv} env
 * @param {{ userDataDir: string, extensionsDir: string }} profile
 * @param {string} vsix
 */
export function installVsix(env, { userDataDir, extensionsDir }, vsix) {
  const r = spawnSync(env.node, [...csArgs(env, userDataDir, extensionsDir), '--install-extension', vsix, '--force'], {
    encoding: 'utf8',
    env: hostProcessEnv(env, {}),
    timeout: 120_000,
  });
  if (r.status !== 0)
    throw new Error(`code-server --install-extension ${vsix} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Starts code-server; resolves once /healthz answers. Returns { url, port, stop(), logFile }.
 * opts: userDataDir, extensionsDir, folder (opened workspace), env (extra environment for the
 * server and so for the extension host), smokeTestDriver (required for extensionTestsPath
 * payloads), workspaceTrust (keep Workspace Trust on), logFile.
 * @param {HostEnv} env
 * @param {{ userDataDir: string, extensionsDir: string, folder?: string, env?: NodeJS.ProcessEnv, smokeTestDriver?: boolean, workspaceTrust?: boolean, logFile: string }} opts
 * @returns {Promise<Server>}
 */
export async function startServer(env, opts) {
  const port = await freePort();
  const args = [
    ...csArgs(env, opts.userDataDir, opts.extensionsDir),
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--auth',
    'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
  ];
  // Trusted by default; a test of restricted mode passes workspaceTrust: true (then the folder
  // opens untrusted unless the user, or the test, grants trust).
  if (!opts.workspaceTrust) args.push('--disable-workspace-trust');
  // The workbench ignores the `payload` URL parameter (extensionTestsPath) in a built product
  // unless the smoke-test driver is enabled.
  if (opts.smokeTestDriver) args.push('--vscode-option', 'enable-smoke-test-driver');
  if (opts.folder) args.push(opts.folder);
  const out = fs.openSync(opts.logFile, 'a');
  const child = spawn(env.node, args, {
    detached: true,
    stdio: ['ignore', out, out],
    env: hostProcessEnv(env, opts.env ?? {}),
  });
  fs.closeSync(out);
  /** @type {{ code: number | null, signal: NodeJS.Signals | null } | null} */
  let exited = null;
  const exitPromise = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    }),
  );
  const url = `http://127.0.0.1:${port}`;

  const pid = /** @type {number} */ (child.pid);
  async function stop() {
    if (exited) return;
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    await exitPromise;
    clearTimeout(timer);
    // The leader is gone; children that ignored SIGTERM are still in the group.
    await new Promise((r) => setTimeout(r, 200));
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* group empty: good */
    }
  }
  registerCleanup(stop);

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited)
      throw new Error(
        `code-server exited (${JSON.stringify(exited)}) before answering; log: ${opts.logFile}\n${tail(opts.logFile)}`,
      );
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `code-server did not answer ${url}/healthz within 60 s; log: ${opts.logFile}\n${tail(opts.logFile)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return { url, port, authority: `127.0.0.1:${port}`, stop, pid: child.pid, logFile: opts.logFile };
}

/**
 * The workbench URL that opens `folder`, with an optional payload of [key, local path] pairs
 * (extensionDevelopmentPath, extensionTestsPath) passed as vscode-remote URIs of this server.
 * @param {Server} server
 * @param {string} folder
 * @param {[string, string][]} payload
 */
export function workbenchUrl(server, folder, payload = []) {
  /** @param {string} p */
  const remote = (p) => `vscode-remote://${server.authority}${p}`;
  const q = payload.length
    ? `&payload=${encodeURIComponent(JSON.stringify(payload.map(([k, p]) => [k, remote(p)])))}`
    : '';
  return `${server.url}/?folder=${encodeURIComponent(folder)}${q}`;
}

/**
 * Saves screenshots of `page` as test-artifacts/<prefix><name>.png and logs each.
 * @param {Page} page
 * @param {string} prefix
 * @returns {(name: string) => Promise<void>}
 */
export function screenshotter(page, prefix) {
  return async (name) => {
    const file = path.join(ARTIFACTS, `${prefix}${name}.png`);
    await page.screenshot({ path: file });
    log(`screenshot ${path.relative(ROOT, file)}`);
  };
}

/**
 * @param {string} file
 * @param {number} n
 */
export function tail(file, n = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/**
 * Headless Debian chromium in a fresh profile (flags from the doc: no sandbox as root, no network chatter).
 * @param {HostEnv} env
 * @param {string} profileDir
 * @param {{ colorScheme?: 'light' | 'dark' }} options
 * @returns {Promise<BrowserContext>}
 */
export async function launchBrowser(env, profileDir, { colorScheme } = {}) {
  const require = createRequire(import.meta.url);
  const { chromium } = require(env.playwright);
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: env.chromium,
    headless: true,
    viewport: { width: 1400, height: 900 },
    ...(colorScheme ? { colorScheme } : {}),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  registerCleanup(() => context.close().catch(() => {}));
  return context;
}

// ---- cleanup: always, also on Ctrl-C / SIGTERM and on the overall timeout ----------------------
/** @type {(() => unknown)[]} */
const cleanups = [];
/** @param {() => unknown} fn */
export function registerCleanup(fn) {
  cleanups.unshift(fn);
}
/** @type {Promise<void> | null} */
let cleaning = null;
export function cleanup() {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0)) {
      try {
        await fn();
      } catch (e) {
        log(`cleanup: ${/** @type {Error} */ (e)?.message ?? e}`);
      }
    }
  })();
  return cleaning;
}
/**
 * Removes a temp dir at cleanup unless MET_KEEP_TMP=1.
 * @param {string} dir
 */
export function cleanupDir(dir) {
  registerCleanup(() => {
    if (process.env.MET_KEEP_TMP === '1') log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  });
}
/**
 * Exit with `code` after cleanup.
 * @param {number} code
 */
export async function finish(code) {
  await cleanup();
  process.exit(code);
}
/**
 * Runs a script's main() (its exit code; a throw prints the error and exits 1), then finish().
 * @param {() => Promise<number>} main
 */
export async function runMain(main) {
  let code = 1;
  try {
    code = await main();
  } catch (e) {
    console.error(`error: ${/** @type {Error} */ (e)?.stack ?? e}`);
  }
  await finish(code);
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void finish(130);
  });
}
/**
 * Fails the whole script after `ms` (the host must never hang CI).
 * @param {number} ms
 * @param {string} what
 */
export function overallTimeout(ms, what) {
  const t = setTimeout(() => {
    log(`${what}: overall timeout of ${Math.round(ms / 1000)} s reached; stopping`);
    void finish(124);
  }, ms);
  t.unref();
}

// ---- the test workspace ------------------------------------------------------------------------
/**
 * A fresh workspace folder: shapes/<class>/*.png (procedural images from
 * src/engine/demo/shapes.ts, 32x32, drawn by the project's own generator through tsx) and the
 * committed tiny backbone copied to backbone/ (so a weights picker finds it inside the workspace).
 * Returns { dir, data, backbone }.
 * @param {string} dir
 * @param {{ classes?: string[], perClass?: number, seed?: number }} options
 */
export function makeWorkspace(
  dir,
  { classes = ['circle', 'square', 'triangle', 'cross'], perClass = 12, seed = 0 } = {},
) {
  fs.mkdirSync(dir, { recursive: true });
  const data = path.join(dir, 'shapes');
  const script = `
    const { writeShapeFolder } = require(${JSON.stringify(path.join(ROOT, 'src/engine/demo/shapes.ts'))});
    writeShapeFolder({ out: ${JSON.stringify(data)}, classes: ${JSON.stringify(classes)}, perClass: ${perClass}, seed: ${seed} })
      .then((r) => console.log(r.manifest.samples.length), (e) => { console.error(e); process.exit(1); });`;
  // The system Node 20 with the project's own tsx and sharp (not the host's Node 24).
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`generating ${data} failed:\n${r.stdout}\n${r.stderr}`);
  const backboneDir = path.join(dir, 'backbone');
  fs.mkdirSync(backboneDir, { recursive: true });
  for (const f of ['tiny-vit.safetensors', 'config.json'])
    fs.copyFileSync(path.join(ROOT, 'assets/tiny-vit', f), path.join(backboneDir, f));
  return { dir, data, backbone: path.join(backboneDir, 'tiny-vit.safetensors'), images: Number(r.stdout.trim()) };
}
