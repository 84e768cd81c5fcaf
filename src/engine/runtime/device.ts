// Execution-provider (device) choice: which onnxruntime providers really work on this machine,
// and which one a run uses.
//
// A GPU provider counts as available only after a tiny MatMul session, created with that
// provider alone, has run and returned the right numbers: onnxruntime-node lists WebGPU as
// built in on every Linux machine, and CUDA as soon as the package supports it, whether or not
// a driver or the provider library is there.
//
// Each probe runs in a child process, because:
// - onnxruntime-node creates sessions and runs them synchronously on the calling thread, so a
//   driver that hangs would hang the engine where no timer can interrupt it; a child is killed;
// - a crashing GPU driver takes down only the child;
// - Dawn and the Vulkan loader print why they refuse an adapter on stderr (the exception only
//   says "No supported adapters"), and only a child's stderr can be read;
// - the verbose log of the child's session shows where onnxruntime placed the MatMul.
// The child inherits this process's environment, so it sees the same drivers a session here
// would (VK_ICD_FILENAMES, LD_LIBRARY_PATH... are read at load time, so they must be set before
// the engine process starts; see scripts/setup-webgpu.sh).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { compile } from '../graph/onnx';
import { Graph } from '../graph/ir';
import { type DEVICES, PROVIDER_LABELS, PROVIDERS, type ProviderName } from '../settings';
import { UserError } from '../tensor';

export type Device = (typeof DEVICES)[number];
export type Provider = ProviderName;
export type GpuProvider = Exclude<Provider, 'cpu'>;
const GPU_PROVIDERS = PROVIDERS.filter((p): p is GpuProvider => p !== 'cpu');

/**
 * The GPU providers 'auto' tries on a platform, in order (then the CPU). CUDA first where it
 * exists: it is the fastest when its libraries are installed. WebGPU next: it is the provider
 * the train step is checked on (lavapipe parity tests) and runs on Vulkan, D3D12 and Metal.
 * DirectML last on Windows. CoreML never: it runs inference segments only (the train step's ops
 * are not CoreML's), so it is used only when asked for by name, for inference.
 */
export function autoOrder(platform: NodeJS.Platform = process.platform): GpuProvider[] {
  if (platform === 'win32') return ['cuda', 'webgpu', 'dml'];
  if (platform === 'darwin') return ['webgpu'];
  return ['cuda', 'webgpu'];
}

/** Where onnxruntime-node 1.30 ships each provider (its README), for "not in this build" messages. */
const SHIPPED_ON: Record<GpuProvider, string> = {
  cuda: 'Linux x64, with provider libraries fetched at install time',
  webgpu: 'Windows, Linux x64 and macOS',
  dml: 'Windows',
  coreml: 'macOS',
};

export interface ProviderStatus {
  provider: Provider;
  available: boolean;
  /** Plain words: why not, or what was found. */
  reason: string;
  /**
   * WebGPU only: every Vulkan driver present is a CPU rasteriser (lavapipe, SwiftShader).
   * Such a provider is correct but far slower than onnxruntime's CPU provider, so 'auto' skips it.
   */
  software?: boolean;
  /** Wall time of the probe (child start, session creation, one run). */
  probeMs?: number;
  /** Not in this platform's onnxruntime-node build at all (DirectML off Windows...): listed, not probed. */
  absent?: boolean;
}

export interface DeviceChoice {
  device: Provider;
  /** Execution providers for Session.create, most preferred first (CPU takes unsupported ops). */
  providers: Provider[];
  statuses: ProviderStatus[];
  /** One plain sentence per GPU provider not used, saying why. */
  notes: string[];
}

export interface ProbeOptions {
  /** Per-provider limit; a probe still running then is killed and reported unavailable. */
  timeoutMs?: number;
  /** Environment of the probe processes (default: this process's). Results are cached per env. */
  env?: NodeJS.ProcessEnv;
  /** Probe again even if this process already has a result for this env. */
  refresh?: boolean;
}

const LABEL = PROVIDER_LABELS;
const ORT_EP_NAME: Record<GpuProvider, string> = {
  cuda: 'CUDAExecutionProvider',
  webgpu: 'WebGpuExecutionProvider',
  dml: 'DmlExecutionProvider',
  coreml: 'CoreMLExecutionProvider',
};
const DEFAULT_TIMEOUT_MS = 20_000;
const SETUP_HINT = 'on a CPU-only machine see scripts/setup-webgpu.sh';
const CPU_STATUS: ProviderStatus = { provider: 'cpu', available: true, reason: 'built into onnxruntime-node' };

// Variables that change what a probe finds; the cache is keyed on them.
const ENV_KEYS = [
  'VK_ICD_FILENAMES',
  'VK_DRIVER_FILES',
  'VK_ADD_DRIVER_FILES',
  'LD_LIBRARY_PATH',
  'XDG_RUNTIME_DIR',
  'CUDA_VISIBLE_DEVICES',
  'PATH',
];
const cache = new Map<string, Promise<ProviderStatus[]>>();

/** Checks each provider for real (see the top of this file); cached per process and env. */
export function probeProviders(opts: ProbeOptions = {}): Promise<ProviderStatus[]> {
  const env = opts.env ?? process.env;
  const key = JSON.stringify(ENV_KEYS.map((k) => env[k] ?? null));
  let p = opts.refresh ? undefined : cache.get(key);
  if (!p) {
    p = probeAll(env, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    cache.set(key, p);
    // A failure of the probing machinery itself must not stick for the life of the process.
    p.catch(() => cache.delete(key));
  }
  return p;
}

type Backend = { name: string; bundled: boolean };

async function probeAll(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ProviderStatus[]> {
  let backends: Backend[] = [];
  try {
    backends = ort.listSupportedBackends();
  } catch {
    // Older bindings lack the call; each probe then finds out by trying.
    backends = [
      { name: 'cuda', bundled: false },
      { name: 'webgpu', bundled: true },
    ];
  }
  const model = probeModel();
  // All probes at once: each is a separate process, and most of a probe is waiting.
  const [adapters, ...statuses] = await Promise.all([
    gpuAdapters(process.platform, env),
    ...GPU_PROVIDERS.map((p) => {
      if (!backends.some((b) => b.name === p)) return Promise.resolve(notInBuild(p));
      if (p === 'cuda') return probeCuda(backends, model, env, timeoutMs);
      if (p === 'webgpu') return probeWebGpu(model, env, timeoutMs);
      return probeOther(p, model, env, timeoutMs);
    }),
  ]);
  // onnxruntime-node does not say which adapter a provider took; the OS lists what there is.
  const gpus = adapters as string[];
  if (gpus.length)
    for (const s of statuses as ProviderStatus[])
      if (s.available && s.provider !== 'coreml') s.reason += `; GPU${gpus.length > 1 ? 's' : ''}: ${gpus.join(', ')}`;
  return [...(statuses as ProviderStatus[]), CPU_STATUS];
}

/**
 * The machine's GPUs by name, as the OS reports them (nvidia-smi on Linux, the video controllers
 * on Windows, system_profiler on macOS); [] when the tool is missing or says nothing. Bounded:
 * 5 s, and a missing tool costs one failed spawn.
 */
export function gpuAdapters(platform: NodeJS.Platform, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const [cmd, args] =
    platform === 'win32'
      ? ['powershell', ['-NoProfile', '-Command', '(Get-CimInstance Win32_VideoController).Name']]
      : platform === 'darwin'
        ? ['system_profiler', ['SPDisplaysDataType']]
        : ['nvidia-smi', ['--query-gpu=name,driver_version', '--format=csv,noheader']];
  return new Promise((resolve) => {
    let out = '';
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'ignore'], windowsHide: true });
    } catch {
      return resolve([]);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', () => {
      clearTimeout(timer);
      resolve([]);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? parseAdapters(platform, out) : []);
    });
  });
}

/** The GPU names in a tool's output (gpuAdapters). */
export function parseAdapters(platform: NodeJS.Platform, out: string): string[] {
  const lines = out.split(/\r?\n/).map((l) => l.trim());
  if (platform === 'darwin')
    return lines.filter((l) => l.startsWith('Chipset Model:')).map((l) => l.slice('Chipset Model:'.length).trim());
  if (platform === 'win32') return lines.filter(Boolean);
  // nvidia-smi: "NVIDIA H100 80GB HBM3, 550.54.15"
  return lines.filter(Boolean).map((l) => {
    const [name, driver] = l.split(',').map((x) => x.trim());
    return driver ? `${name} (driver ${driver})` : name;
  });
}

/** A provider this platform's onnxruntime-node build does not have. */
export function notInBuild(
  p: GpuProvider,
  platform: NodeJS.Platform = process.platform,
  arch: string = process.arch,
): ProviderStatus {
  return {
    provider: p,
    available: false,
    absent: true,
    reason: `not in onnxruntime-node's ${platform}/${arch} build (it has ${LABEL[p]} on ${SHIPPED_ON[p]})`,
  };
}

// ---- DirectML (Windows), CoreML (macOS) ----

async function probeOther(
  p: 'dml' | 'coreml',
  model: Uint8Array,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ProviderStatus> {
  const r = await runProbe(p, model, env, timeoutMs);
  if (r.ok)
    return {
      provider: p,
      available: true,
      reason: p === 'coreml' ? `${r.found}; inference only (auto never picks it for training)` : r.found,
      probeMs: r.ms,
    };
  return { provider: p, available: false, reason: otherReason(p, r), probeMs: r.ms };
}

export function otherReason(p: 'dml' | 'coreml', r: Pick<ProbeResult, 'error' | 'timedOut' | 'limitMs'>): string {
  if (r.timedOut) return `the test session did not finish within ${secs(r.limitMs)} (GPU driver hung?)`;
  // DXGI_ERROR_UNSUPPORTED: no Direct3D 12 device (no GPU, a basic display driver, Wine without vkd3d).
  if (p === 'dml' && /887A0004/i.test(r.error))
    return "no Direct3D 12 device (DXGI_ERROR_UNSUPPORTED) (DirectML needs a DirectX 12 GPU and its driver: update it from Windows Update or the vendor's site; dxdiag shows the DirectX version)";
  const hint =
    p === 'dml'
      ? "DirectML needs Windows 10 1903 or later and a DirectX 12 GPU: update the GPU driver (Windows Update or the vendor's site); dxdiag shows the DirectX version"
      : 'CoreML needs macOS 12 or later';
  return `the test session failed: ${firstLine(r.error)} (${hint})`;
}

// ---- CUDA ----

async function probeCuda(
  backends: { name: string; bundled: boolean }[],
  model: Uint8Array,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ProviderStatus> {
  const entry = backends.find((b) => b.name === 'cuda');
  if (!entry) return notInBuild('cuda');
  if (!entry.bundled) {
    // Not in the npm tarball (too large): onnxruntime-node's install step downloads it from
    // NuGet, unless told to skip or offline. Without the library a session only says "Failed to
    // load shared library", so say why here.
    const dir = ortBinaryDir();
    const lib =
      dir && fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => /providers_cuda\.(so|dll)$/.test(f)) : undefined;
    if (!lib) {
      const why = cudaSkipReason();
      return {
        provider: 'cuda',
        available: false,
        reason: `onnxruntime-node was installed without its CUDA provider (${why}). To add it: ${cudaInstallCommand(ort.env.versions.common ?? '1.30.0', process.platform, dir ?? '<onnxruntime-node>/bin/napi-v6/linux/x64')}; it also needs the CUDA 12 runtime and cuDNN 9 (nvidia-smi shows the driver)`,
      };
    }
  }
  const r = await runProbe('cuda', model, env, timeoutMs);
  if (r.ok) return { provider: 'cuda', available: true, reason: r.found, probeMs: r.ms };
  return { provider: 'cuda', available: false, reason: cudaReason(r), probeMs: r.ms };
}

/**
 * The command that puts onnxruntime's CUDA provider libraries (from Microsoft's NuGet package of
 * the bundled onnxruntime version, as onnxruntime-node's own install step fetches them) next to
 * the binding in `dir`. One line, for a terminal on the machine the engine runs on.
 */
export function cudaInstallCommand(version: string, platform: NodeJS.Platform, dir: string): string {
  if (platform === 'win32')
    return `powershell -c "Invoke-WebRequest https://www.nuget.org/api/v2/package/Microsoft.ML.OnnxRuntime.Gpu.Windows/${version} -OutFile $env:TEMP\\ort-gpu.zip; Expand-Archive -Force $env:TEMP\\ort-gpu.zip $env:TEMP\\ort-gpu; Copy-Item $env:TEMP\\ort-gpu\\runtimes\\win-x64\\native\\onnxruntime_providers_*.dll '${dir}'"`;
  return `curl -L -o /tmp/ort-gpu.nupkg https://www.nuget.org/api/v2/package/Microsoft.ML.OnnxRuntime.Gpu.Linux/${version} && unzip -j -o /tmp/ort-gpu.nupkg 'runtimes/linux-x64/native/libonnxruntime_providers_*.so' -d '${dir}'`;
}

function ortBinaryDir(): string | undefined {
  try {
    const pkg = path.dirname(path.dirname(require.resolve('onnxruntime-node')));
    return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** Why onnxruntime-node's install step did not fetch the CUDA provider, as far as can be told. */
function cudaSkipReason(): string {
  const flag = process.env.ONNXRUNTIME_NODE_INSTALL ?? process.env.npm_config_onnxruntime_node_install;
  if (flag === 'skip') return 'onnxruntime-node-install=skip in the environment';
  // The project's .npmrc (next to node_modules) is where this repository sets the flag.
  try {
    const pkg = path.dirname(path.dirname(require.resolve('onnxruntime-node')));
    for (let d = path.dirname(pkg); ; d = path.dirname(d)) {
      const rc = path.join(d, '.npmrc');
      if (
        fs.existsSync(rc) &&
        /^\s*onnxruntime-node-install(-cuda)?\s*=\s*skip\s*$/m.test(fs.readFileSync(rc, 'utf8'))
      ) {
        const cwd = process.cwd() + path.sep;
        return `onnxruntime-node-install=skip in ${rc.startsWith(cwd) ? rc.slice(cwd.length) : rc}`;
      }
      if (path.dirname(d) === d) break;
    }
  } catch {
    // fall through
  }
  return 'its library is not in node_modules/onnxruntime-node';
}

function cudaReason(r: ProbeResult): string {
  const text = `${r.error}\n${r.stderr}`;
  if (r.timedOut) return `the test session did not finish within ${secs(r.limitMs)} (CUDA driver hung?)`;
  const so = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(text);
  if (so && !/providers_(shared|cuda)/.test(so[1]))
    return `a CUDA library is missing: ${so[1]} (install the CUDA 12 runtime and cuDNN 9, or add their folder to LD_LIBRARY_PATH)`;
  if (
    /no CUDA-capable device|cudaErrorNoDevice|CUDA driver version is insufficient|cudaErrorInsufficientDriver/i.test(
      text,
    )
  ) {
    return `no usable NVIDIA GPU: ${firstLine(matchLine(text, /CUDA|cuda/) ?? r.error)} (check nvidia-smi and the driver)`;
  }
  if (/Failed to load (shared )?library/i.test(text))
    return `the CUDA provider library could not be loaded: ${firstLine(matchLine(text, /Failed to load/) ?? r.error)}`;
  return `the test session failed: ${firstLine(r.error)}`;
}

// ---- WebGPU ----

async function probeWebGpu(model: Uint8Array, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ProviderStatus> {
  const icds = process.platform === 'linux' ? vulkanDrivers(env) : [];
  const software = icds.length > 0 && icds.every((d) => d.software);
  const r = await runProbe('webgpu', model, env, timeoutMs);
  if (r.ok) {
    const drv = icds.length ? `; Vulkan driver${icds.length > 1 ? 's' : ''}: ${driverList(icds, env)}` : '';
    return {
      provider: 'webgpu',
      available: true,
      reason: r.found + drv,
      software: software || undefined,
      probeMs: r.ms,
    };
  }
  return { provider: 'webgpu', available: false, reason: webGpuReason(r, icds, env), probeMs: r.ms };
}

function webGpuReason(r: ProbeResult, icds: VulkanDriver[], env: NodeJS.ProcessEnv): string {
  if (r.timedOut) return `the test session did not finish within ${secs(r.limitMs)} (GPU driver hung?)`;
  const text = `${r.error}\n${r.stderr}`;
  const hint = process.platform === 'linux' ? `install GPU drivers; ${SETUP_HINT}` : 'install or update the GPU driver';
  const noLoader = /Couldn't load Vulkan: ?(.*)/.exec(text);
  if (noLoader)
    return `no adapter: the Vulkan loader could not be loaded (${noLoader[1].trim() || 'libvulkan.so.1'}) (install libvulkan1 and GPU drivers; ${SETUP_HINT})`;
  if (/Found no drivers|VK_ERROR_INCOMPATIBLE_DRIVER/.test(text))
    return `no adapter: Dawn found no Vulkan driver (${hint})`;
  if (/No supported adapters|Failed to get a WebGPU adapter/.test(text)) {
    // Dawn says what it needs but the driver lacks as "Warning: <feature> required.".
    const need = /Warning: (.*required\.?)/.exec(text);
    const found = icds.length
      ? `the Vulkan devices found (drivers: ${driverList(icds, env)})`
      : 'the GPU adapters found';
    // Hardware Mesa drivers without a GPU expose no device, so on a CPU-only machine the one
    // rejected is the software driver; bookworm's (Mesa 22.3) lacks what Dawn requires.
    const old = icds.some((d) => d.software) ? ', a software driver needs Mesa 25 or later' : '';
    if (need) return `no adapter: Dawn rejected ${found}: ${need[1].replace(/\.$/, '')} (${hint}${old})`;
    return `no adapter: Dawn found no GPU adapter it supports (${hint})`;
  }
  return `the test session failed: ${firstLine(r.error)}`;
}

interface VulkanDriver {
  name: string;
  software: boolean;
}

/**
 * The Vulkan drivers (ICD manifests) the loader will see, to say in plain words what was found
 * and whether it is only a CPU rasteriser. Follows the loader's own lookup: the override
 * variables, else the standard manifest folders.
 */
function vulkanDrivers(env: NodeJS.ProcessEnv): VulkanDriver[] {
  const override = env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES;
  let files: string[] = [];
  const listDir = (d: string): string[] => {
    try {
      return fs
        .readdirSync(d)
        .filter((f) => f.endsWith('.json'))
        .map((f) => path.join(d, f));
    } catch {
      return [];
    }
  };
  if (override) {
    for (const p of override.split(':').filter(Boolean)) files.push(...(isDir(p) ? listDir(p) : [p]));
  } else {
    const dataDirs = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':');
    for (const d of ['/etc/vulkan/icd.d', ...dataDirs.map((x) => path.join(x, 'vulkan/icd.d'))])
      files.push(...listDir(d));
    if (env.VK_ADD_DRIVER_FILES) files.push(...env.VK_ADD_DRIVER_FILES.split(':').filter(Boolean));
  }
  files = [...new Set(files)];
  const out: VulkanDriver[] = [];
  for (const f of files) {
    let lib = '';
    try {
      lib = String(
        (JSON.parse(fs.readFileSync(f, 'utf8')) as { ICD?: { library_path?: string } }).ICD?.library_path ?? '',
      );
    } catch {
      continue; // the loader skips unreadable manifests too
    }
    const base = path.basename(lib || f);
    const software = /lvp|swiftshader/i.test(base);
    const name = /lvp/i.test(base)
      ? 'lavapipe (software)'
      : /swiftshader/i.test(base)
        ? 'SwiftShader (software)'
        : base.replace(/^libvulkan_|\.so.*$|\.json$/g, '');
    out.push({ name, software });
  }
  return out;
}

function driverList(icds: VulkanDriver[], env: NodeJS.ProcessEnv): string {
  const via = env.VK_DRIVER_FILES ? ' via VK_DRIVER_FILES' : env.VK_ICD_FILENAMES ? ' via VK_ICD_FILENAMES' : '';
  return icds.map((d) => d.name).join(', ') + via;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// ---- The probe child ----

/** a @ b with a = [[1,2],[3,4]], b = [[5,6],[7,8]]; any working provider returns exactly this. */
const PROBE_A = [1, 2, 3, 4];
const PROBE_B = [5, 6, 7, 8];
const PROBE_Y = [19, 22, 43, 50];
let probeModelBytes: Uint8Array | undefined;

function probeModel(): Uint8Array {
  if (!probeModelBytes) {
    const g = new Graph('float32');
    const a = g.input('a', [2, 2]);
    const b = g.input('b', [2, 2]);
    probeModelBytes = compile(g, { y: g.matmul(a, b) }, { name: 'met_device_probe' }).bytes;
  }
  return probeModelBytes;
}

// Plain JavaScript, run with `node -e` (no tsx, no bundle paths): reads {ortPath, provider,
// model} as JSON on stdin, prints one marked JSON line on stdout. Verbose session logging goes
// to stderr, where the parent reads the node placement.
const CHILD_JS = `
const fs = require('fs');
const inp = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = { ok: false };
(async () => {
  try {
    const ort = require(inp.ortPath);
    const t0 = Date.now();
    const s = await ort.InferenceSession.create(Buffer.from(inp.model, 'base64'), {
      executionProviders: [inp.provider], logSeverityLevel: 0, logVerbosityLevel: 0, graphOptimizationLevel: 'disabled',
    });
    out.createMs = Date.now() - t0;
    const r = await s.run({
      a: new ort.Tensor('float32', Float32Array.from(inp.a), [2, 2]),
      b: new ort.Tensor('float32', Float32Array.from(inp.b), [2, 2]),
    });
    out.y = Array.from(r.y.data);
    out.ok = true;
    await s.release();
  } catch (e) {
    out.error = String((e && e.message) || e);
  }
  process.stdout.write('\\n@@MET_PROBE@@' + JSON.stringify(out) + '\\n', () => process.exit(0));
})();
`;

interface ProbeResult {
  ok: boolean;
  /** What was found, for a successful probe. */
  found: string;
  error: string;
  stderr: string;
  timedOut: boolean;
  limitMs: number;
  ms: number;
}

const MAX_STDERR = 512 * 1024;

function runProbe(
  provider: GpuProvider,
  model: Uint8Array,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ProbeResult> {
  const t0 = Date.now();
  return new Promise<ProbeResult>((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const done = (
      r: Omit<ProbeResult, 'stderr' | 'timedOut' | 'limitMs' | 'ms' | 'found'> & { found?: string },
    ): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ found: '', ...r, stderr, timedOut, limitMs: timeoutMs, ms: Date.now() - t0 });
    };
    let ortPath: string;
    try {
      ortPath = require.resolve('onnxruntime-node');
    } catch (e) {
      done({ ok: false, error: `onnxruntime-node not found: ${(e as Error).message}` });
      return;
    }
    // In VS Code the engine runs on Electron's binary; this makes it behave as plain node.
    const child = spawn(process.execPath, ['-e', CHILD_JS], {
      env: { ...env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      done({ ok: false, error: `timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_STDERR) stderr += d;
    });
    child.on('error', (e) => done({ ok: false, error: `could not start the probe process: ${e.message}` }));
    child.on('close', (code, signal) => {
      const line = stdout.split('\n').find((l) => l.startsWith('@@MET_PROBE@@'));
      if (!line) {
        done({
          ok: false,
          error: `the probe process ${signal ? `was killed by ${signal}` : `exited with code ${code}`} (driver crash?)${lastLines(stderr)}`,
        });
        return;
      }
      const res = JSON.parse(line.slice('@@MET_PROBE@@'.length)) as {
        ok: boolean;
        y?: number[];
        error?: string;
        createMs?: number;
      };
      if (!res.ok) {
        done({ ok: false, error: res.error ?? 'unknown error' });
        return;
      }
      const y = res.y ?? [];
      if (y.length !== PROBE_Y.length || y.some((v, i) => Math.abs(v - PROBE_Y[i]) > 1e-3)) {
        done({
          ok: false,
          error: `the test MatMul returned wrong values [${y.join(', ')}] instead of [${PROBE_Y.join(', ')}]`,
        });
        return;
      }
      done({ ok: true, error: '', found: describePlacement(provider, stderr, res.createMs ?? 0) });
    });
    child.stdin.on('error', () => undefined); // a child that dies early closes its stdin
    child.stdin.end(
      JSON.stringify({ ortPath, provider, model: Buffer.from(model).toString('base64'), a: PROBE_A, b: PROBE_B }),
    );
  });
}

/** "the test MatMul ran on WebGpuExecutionProvider" from the child's verbose session log. */
function describePlacement(provider: GpuProvider, stderr: string, createMs: number): string {
  const ep = ORT_EP_NAME[provider];
  const placed = [...stderr.matchAll(/(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g)];
  const onGpu = placed.some((m) => m[1] === ep);
  const where =
    placed.length === 0
      ? 'ran'
      : onGpu
        ? `ran on ${ep}`
        : `ran, but onnxruntime placed it on ${placed.map((m) => m[1]).join(', ')}`;
  return `${provider === 'webgpu' ? 'adapter found; ' : ''}the test MatMul ${where} (session created in ${(createMs / 1000).toFixed(1)} s)`;
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

function firstLine(s: string): string {
  // onnxruntime's messages can be long (source location, function signature); one line is enough.
  const l = (s.split('\n').find((x) => x.trim()) ?? s).trim();
  return l.length > 300 ? `${l.slice(0, 297)}...` : l;
}

function matchLine(text: string, re: RegExp): string | undefined {
  return text.split('\n').find((l) => re.test(l));
}

function lastLines(s: string): string {
  const lines = s.split('\n').filter((l) => l.trim() && !/\[[VI]:onnxruntime/.test(l));
  return lines.length ? `: ${lines.slice(-3).join(' | ').slice(0, 400)}` : '';
}

// ---- Choosing ----

/** What 'auto' picks from probe results: this platform's first working hardware GPU provider, else the CPU. */
export function autoPick(statuses: ProviderStatus[], platform: NodeJS.Platform = process.platform): Provider {
  for (const p of autoOrder(platform)) {
    const s = statuses.find((x) => x.provider === p);
    if (s?.available && !s.software) return p;
  }
  return 'cpu';
}

export interface ResolveOptions extends ProbeOptions {
  /** What the sessions run: training refuses CoreML (inference segments only). Default 'train'. */
  purpose?: 'train' | 'infer';
  /** For tests: the platform whose 'auto' order applies. */
  platform?: NodeJS.Platform;
}

/**
 * Resolves a requested device to the providers a session uses. 'cpu' never probes; an explicit
 * GPU provider that does not work is a UserError saying why; 'auto' tries this platform's GPU
 * providers in order (autoOrder: never a software Vulkan driver, never CoreML), then the CPU,
 * and notes why each GPU provider was not used.
 */
export async function resolveDevice(requested: Device, opts: ResolveOptions = {}): Promise<DeviceChoice> {
  if (requested === 'cpu') return { device: 'cpu', providers: ['cpu'], statuses: [CPU_STATUS], notes: [] };
  if (requested !== 'auto' && !(GPU_PROVIDERS as string[]).includes(requested)) {
    throw new UserError(`unknown device '${String(requested)}' (expected auto, cpu, ${GPU_PROVIDERS.join(', ')})`);
  }
  if (requested === 'coreml' && (opts.purpose ?? 'train') === 'train')
    throw new UserError(
      'device coreml: CoreML runs inference only (met predict, met eval); train with webgpu, cpu or auto',
    );
  const statuses = await probeProviders(opts);
  const status = (p: Provider): ProviderStatus =>
    statuses.find((s) => s.provider === p) ?? { provider: p, available: false, reason: 'not probed' };

  if (requested !== 'auto') {
    const s = status(requested);
    if (!s.available) throw new UserError(`${LABEL[requested]} is not available: ${s.reason}`);
    const notes = s.software
      ? [`${LABEL[requested]}: runs on a software Vulkan driver, correct but much slower than the CPU provider`]
      : [];
    return { device: requested, providers: [requested, 'cpu'], statuses, notes };
  }

  const platform = opts.platform ?? process.platform;
  const device = autoPick(statuses, platform);
  const notes: string[] = [];
  for (const p of autoOrder(platform)) {
    if (p === device) continue;
    const s = status(p);
    if (!s.available) notes.push(`${LABEL[p]}: ${s.reason}`);
    else if (s.software)
      notes.push(
        `${LABEL[p]}: works, but only on a software Vulkan driver, much slower than the CPU provider (choose device ${p} to use it anyway)`,
      );
    else notes.push(`${LABEL[p]}: available, but ${LABEL[device]} is preferred`);
  }
  return { device, providers: device === 'cpu' ? ['cpu'] : [device, 'cpu'], statuses, notes };
}

/** A plain-text table for `met` (provider, available, reason) and which provider auto picks. */
export function formatDeviceReport(statuses: ProviderStatus[], choice?: DeviceChoice): string {
  const rows = statuses.map((s) => [
    s.provider,
    s.available ? (s.software ? 'yes (software)' : 'yes') : 'no',
    s.reason,
  ]);
  const head = ['provider', 'available', 'reason'];
  const w = [0, 1].map((i) => Math.max(head[i].length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string => `${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2]}`;
  const lines = [fmt(head), ...rows.map(fmt)];
  lines.push('', `auto tries on ${process.platform}: ${[...autoOrder().map((p) => LABEL[p]), 'CPU'].join(', ')}`);
  lines.push(`auto picks: ${autoPick(statuses)}`);
  if (choice) {
    lines.push(`using: ${choice.device} (execution providers: ${choice.providers.join(', ')})`);
    for (const n of choice.notes) lines.push(`  - ${n}`);
  }
  return lines.join('\n');
}
