// Device (execution provider) choice, and the WebGPU path checked against the CPU.
//
// The WebGPU part needs a Vulkan driver Dawn accepts. On a CPU-only machine that is Mesa 25's
// lavapipe, unpacked by scripts/setup-webgpu.sh into .cache/mesa; its env.sh must be in effect
// before onnxruntime loads, so that check runs in a child process (test/webgpu-check.ts). Without
// .cache/mesa/env.sh the check is skipped, unless MET_REQUIRE_WEBGPU=1 (CI, after the setup
// script), where it fails.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  autoOrder,
  autoPick,
  cudaInstallCommand,
  formatDeviceReport,
  notInBuild,
  otherReason,
  parseAdapters,
  probeProviders,
  type ProviderStatus,
  resolveDevice,
} from '../src/engine/runtime/device';
import { UserError } from '../src/engine/tensor';
import { haveMesa, mesaEnv } from './mesa';
import type { CheckResult } from './webgpu-check';

// The raw module object (not an import-star copy), so that replacing `spawn` on it is seen by
// device.ts, which looks the function up on the module at each call.
const childProcess: typeof import('node:child_process') = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const REL_TOL = 1e-4;

/** Counts child processes started while `fn` runs. */
async function countSpawns<T>(fn: () => Promise<T>): Promise<{ value: T; spawns: number }> {
  const orig = childProcess.spawn;
  let spawns = 0;
  childProcess.spawn = ((...args: Parameters<typeof orig>) => {
    spawns++;
    return orig(...args);
  }) as typeof orig;
  try {
    return { value: await fn(), spawns };
  } finally {
    childProcess.spawn = orig;
  }
}

/** This process's environment without the project-local Mesa (as on a machine without it). */
function envWithoutMesa(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const mesa = path.join(ROOT, '.cache', 'mesa');
  for (const k of ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'VK_ADD_DRIVER_FILES']) delete env[k];
  if (env.XDG_RUNTIME_DIR?.startsWith(mesa)) delete env.XDG_RUNTIME_DIR;
  if (env.LD_LIBRARY_PATH)
    env.LD_LIBRARY_PATH = env.LD_LIBRARY_PATH.split(':')
      .filter((p) => p && !p.startsWith(mesa))
      .join(':');
  return env;
}

function hardwareGpu(statuses: ProviderStatus[]): boolean {
  return statuses.some((s) => s.provider !== 'cpu' && s.available && !s.software);
}

test("'auto' per platform: the order, never a software driver, never CoreML; CPU when none works", () => {
  assert.deepEqual(autoOrder('linux'), ['cuda', 'webgpu']);
  assert.deepEqual(autoOrder('win32'), ['cuda', 'webgpu', 'dml']);
  assert.deepEqual(autoOrder('darwin'), ['webgpu']);
  const st = (provider: ProviderStatus['provider'], available: boolean, software?: boolean): ProviderStatus => ({
    provider,
    available,
    reason: 'x',
    ...(software ? { software } : {}),
  });
  const all = (over: Partial<Record<ProviderStatus['provider'], ProviderStatus>>): ProviderStatus[] =>
    (['cuda', 'webgpu', 'dml', 'coreml', 'cpu'] as const).map((p) => over[p] ?? st(p, p === 'cpu'));
  // Windows: DirectML when it alone works; WebGPU over DirectML; CUDA over both.
  assert.equal(autoPick(all({ dml: st('dml', true) }), 'win32'), 'dml');
  assert.equal(autoPick(all({ dml: st('dml', true), webgpu: st('webgpu', true) }), 'win32'), 'webgpu');
  assert.equal(autoPick(all({ dml: st('dml', true), cuda: st('cuda', true) }), 'win32'), 'cuda');
  // Linux: DirectML is not tried there even if a status said it worked.
  assert.equal(autoPick(all({ dml: st('dml', true) }), 'linux'), 'cpu');
  // A software rasteriser is never auto's choice.
  assert.equal(autoPick(all({ webgpu: st('webgpu', true, true) }), 'linux'), 'cpu');
  // macOS: WebGPU (Metal); CoreML alone working still means the CPU for auto.
  assert.equal(autoPick(all({ coreml: st('coreml', true) }), 'darwin'), 'cpu');
  assert.equal(autoPick(all({ webgpu: st('webgpu', true), coreml: st('coreml', true) }), 'darwin'), 'webgpu');
});

test('provider messages: not in this build (and where it is), DirectML and CoreML hints, the CUDA install command', () => {
  assert.equal(
    notInBuild('dml', 'linux', 'x64').reason,
    "not in onnxruntime-node's linux/x64 build (it has DirectML on Windows)",
  );
  assert.equal(
    notInBuild('coreml', 'win32', 'arm64').reason,
    "not in onnxruntime-node's win32/arm64 build (it has CoreML on macOS)",
  );
  assert.match(notInBuild('cuda', 'darwin', 'arm64').reason, /it has CUDA on Linux x64/);
  assert.equal(
    otherReason('dml', {
      error: 'dml_provider_factory.cc(512) Exception(1) tid(24) 887A0004 ',
      timedOut: false,
      limitMs: 1,
    }),
    "no Direct3D 12 device (DXGI_ERROR_UNSUPPORTED) (DirectML needs a DirectX 12 GPU and its driver: update it from Windows Update or the vendor's site; dxdiag shows the DirectX version)",
  );
  const dml = otherReason('dml', {
    error: 'DmlExecutionProvider: D3D12CreateDevice failed\nmore',
    timedOut: false,
    limitMs: 1,
  });
  assert.match(
    dml,
    /^the test session failed: DmlExecutionProvider: D3D12CreateDevice failed \(DirectML needs Windows 10 1903 or later and a DirectX 12 GPU: update the GPU driver/,
  );
  assert.match(otherReason('coreml', { error: 'e', timedOut: false, limitMs: 1 }), /CoreML needs macOS 12 or later/);
  assert.match(otherReason('dml', { error: '', timedOut: true, limitMs: 20_000 }), /did not finish within 20 s/);
  const dir = '/x/onnxruntime-node/bin/napi-v6/linux/x64';
  assert.equal(
    cudaInstallCommand('1.30.0', 'linux', dir),
    `curl -L -o /tmp/ort-gpu.nupkg https://www.nuget.org/api/v2/package/Microsoft.ML.OnnxRuntime.Gpu.Linux/1.30.0 && unzip -j -o /tmp/ort-gpu.nupkg 'runtimes/linux-x64/native/libonnxruntime_providers_*.so' -d '${dir}'`,
  );
  assert.match(
    cudaInstallCommand('1.30.0', 'win32', 'C:\\ext'),
    /Microsoft\.ML\.OnnxRuntime\.Gpu\.Windows\/1\.30\.0.*runtimes\\win-x64\\native\\onnxruntime_providers_\*\.dll 'C:\\ext'"$/,
  );
});

test("the machine's GPUs by name, from nvidia-smi, Windows' video controllers and macOS' system_profiler", () => {
  assert.deepEqual(parseAdapters('linux', 'NVIDIA H100 80GB HBM3, 550.54.15\nNVIDIA H100 80GB HBM3, 550.54.15\n'), [
    'NVIDIA H100 80GB HBM3 (driver 550.54.15)',
    'NVIDIA H100 80GB HBM3 (driver 550.54.15)',
  ]);
  assert.deepEqual(parseAdapters('win32', 'NVIDIA GeForce RTX 4070\r\nMicrosoft Basic Display Adapter\r\n'), [
    'NVIDIA GeForce RTX 4070',
    'Microsoft Basic Display Adapter',
  ]);
  assert.deepEqual(
    parseAdapters(
      'darwin',
      'Graphics/Displays:\n\n    Apple M2 Pro:\n\n      Chipset Model: Apple M2 Pro\n      Type: GPU\n',
    ),
    ['Apple M2 Pro'],
  );
  assert.deepEqual(parseAdapters('linux', ''), []);
});

test('device coreml is refused for training (inference only), before any probe', async () => {
  const { spawns } = await countSpawns(() =>
    assert.rejects(resolveDevice('coreml'), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /CoreML runs inference only/);
      return true;
    }),
  );
  assert.equal(spawns, 0);
});

test("resolveDevice('cpu') picks the CPU without probing", async () => {
  const { value: choice, spawns } = await countSpawns(() => resolveDevice('cpu'));
  assert.equal(spawns, 0, 'no probe process may start for cpu');
  assert.equal(choice.device, 'cpu');
  assert.deepEqual(choice.providers, ['cpu']);
  assert.deepEqual(choice.notes, []);
});

test("resolveDevice('auto') without the Mesa env falls back to the CPU and says why", async (t) => {
  const env = envWithoutMesa();
  const t0 = Date.now();
  const choice = await resolveDevice('auto', { env });
  const ms = Date.now() - t0;
  t.diagnostic(`probing took ${ms} ms`);
  for (const line of formatDeviceReport(choice.statuses, choice).split('\n')) t.diagnostic(line);
  assert.deepEqual(
    choice.statuses.map((s) => s.provider),
    ['cuda', 'webgpu', 'dml', 'coreml', 'cpu'],
  );
  // This Linux build has no DirectML or CoreML: listed with where they exist, not probed.
  for (const p of ['dml', 'coreml'] as const) {
    const s = choice.statuses.find((x) => x.provider === p)!;
    assert.equal(s.absent, true);
    assert.match(s.reason, new RegExp(`not in onnxruntime-node's ${process.platform}/${process.arch} build`));
  }
  for (const s of choice.statuses)
    assert.ok(s.reason.length > 10, `${s.provider}: reason '${s.reason}' is not an explanation`);
  assert.equal(choice.device, autoPick(choice.statuses));
  if (hardwareGpu(choice.statuses)) {
    t.diagnostic('this machine has a working GPU provider; the CPU-fallback assertions do not apply');
    return;
  }
  assert.equal(choice.device, 'cpu');
  assert.deepEqual(choice.providers, ['cpu']);
  assert.equal(choice.notes.length, 2, `one note per GPU provider: ${JSON.stringify(choice.notes)}`);
  const cuda = choice.notes.find((n) => n.startsWith('CUDA: '));
  const webgpu = choice.notes.find((n) => n.startsWith('WebGPU: '));
  assert.ok(cuda && cuda.length > 'CUDA: '.length + 10, `CUDA note with a reason: ${cuda}`);
  assert.ok(webgpu && webgpu.length > 'WebGPU: '.length + 10, `WebGPU note with a reason: ${webgpu}`);
  assert.match(formatDeviceReport(choice.statuses), /auto picks: cpu/);

  // Cached per process (and env): asking again starts no probe.
  const again = await countSpawns(() => probeProviders({ env }));
  assert.equal(again.spawns, 0);
  assert.strictEqual(again.value, choice.statuses);
});

test('an explicit GPU device that does not work is a UserError giving the reason', async (t) => {
  const env = envWithoutMesa();
  const statuses = await probeProviders({ env });
  for (const device of ['cuda', 'webgpu'] as const) {
    const s = statuses.find((x) => x.provider === device)!;
    if (s.available) {
      t.diagnostic(`${device} works on this machine; nothing to reject`);
      continue;
    }
    await assert.rejects(resolveDevice(device, { env }), (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
      assert.ok(e.message.includes(s.reason), `message '${e.message}' should give the reason '${s.reason}'`);
      return true;
    });
  }
});

test('WebGPU (lavapipe) matches the CPU on a ViT-like train step', { timeout: 150_000 }, async (t) => {
  if (!haveMesa(t)) return;
  const env = mesaEnv(envWithoutMesa());

  // The probe: a session with only ['webgpu'] listed was created and ran on the WebGPU provider.
  const statuses = await probeProviders({ env });
  const wg = statuses.find((s) => s.provider === 'webgpu')!;
  t.diagnostic(`webgpu probe: ${wg.reason} (${wg.probeMs} ms)`);
  assert.ok(wg.available, `WebGPU probe failed with the Mesa env: ${wg.reason}`);
  assert.match(wg.reason, /ran on WebGpuExecutionProvider/);
  assert.equal(wg.software, true, 'lavapipe is a software driver');
  const choice = await resolveDevice('webgpu', { env });
  assert.deepEqual(choice.providers, ['webgpu', 'cpu']);
  assert.equal(
    (await resolveDevice('auto', { env })).device === 'webgpu',
    false,
    'auto must not pick a software WebGPU adapter',
  );

  // The train step on both providers, in a child that has the env from the start.
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'met-webgpu-')), 'result.json');
  const t0 = Date.now();
  // Most of a cold run is lavapipe compiling ~75 shaders with LLVM (~25 s on the 2-core
  // machine; Mesa caches them in ~/.cache afterwards). 128-bit vectors halve that; the lanes'
  // arithmetic is the same, and this check is about numbers, not speed.
  const childEnv = { LP_NATIVE_VECTOR_WIDTH: '128', ...env };
  const r = childProcess.spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'webgpu-check.ts'), out],
    {
      cwd: ROOT,
      env: childEnv,
      encoding: 'utf8',
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const wallMs = Date.now() - t0;
  const stderr = r.stderr ?? '';
  assert.equal(
    r.status,
    0,
    `webgpu-check failed (${r.signal ?? r.status}, ${r.error?.message ?? ''}):\n${stderr
      .split('\n')
      .filter((l) => !/\[[VI]:onnxruntime/.test(l))
      .slice(-20)
      .join('\n')}`,
  );
  const res = JSON.parse(fs.readFileSync(out, 'utf8')) as CheckResult;
  fs.rmSync(path.dirname(out), { recursive: true, force: true });

  // Where onnxruntime put the nodes (verbose log of the WebGPU session).
  const placed = [...stderr.matchAll(/(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g)];
  const count = (ep: string) => placed.filter((m) => m[1] === ep).reduce((a, m) => a + Number(m[2]), 0);
  const onGpu = count('WebGpuExecutionProvider');
  const onCpu = count('CPUExecutionProvider');
  const cpuOps = [
    ...stderr.matchAll(
      /placed on \[CPUExecutionProvider\][^\n]*\n((?:[^\n]*VerifyEachNodeIsAssignedToAnEp\]\s{3}[^\n]*\n)*)/g,
    ),
  ].flatMap((m) => [...m[1].matchAll(/\]\s{3}(\w+) \(/g)].map((x) => x[1]));
  t.diagnostic(
    `${res.nodeCount} ONNX nodes, ${onGpu + onCpu} after onnxruntime's fusions: ${onGpu} on WebGPU, ${onCpu} on CPU (${cpuOps.join(', ') || 'none'})`,
  );
  t.diagnostic(
    `webgpu: session ${res.webgpuCreateMs} ms, first run ${res.webgpuFirstRunMs} ms (shader compilation), warm run ${res.webgpuRunMs} ms; ` +
      `cpu run ${res.cpuRunMs} ms; child wall ${wallMs} ms`,
  );
  assert.ok(onGpu > 0, 'no node was placed on the WebGPU provider');
  assert.ok(onGpu > onCpu, `most nodes should run on WebGPU (${onGpu} vs ${onCpu} on CPU)`);

  // Agreement: max |webgpu - cpu| relative to the largest |cpu| value of each output.
  assert.deepEqual(Object.keys(res.webgpu).sort(), ['d_head_w', 'd_w1', 'logits', 'loss']);
  for (const [name, ref] of Object.entries(res.cpu)) {
    const got = res.webgpu[name];
    assert.equal(got.length, ref.length, name);
    let maxDiff = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) {
      assert.ok(Number.isFinite(got[i]), `${name}[${i}] = ${got[i]} on WebGPU`);
      maxDiff = Math.max(maxDiff, Math.abs(got[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    const rel = maxDiff / Math.max(scale, 1e-12);
    t.diagnostic(
      `${name} (${ref.length} values): max |webgpu - cpu| = ${maxDiff.toExponential(2)}, relative ${rel.toExponential(2)}`,
    );
    assert.ok(rel <= REL_TOL, `${name}: WebGPU differs from CPU by ${rel.toExponential(2)} relative (> ${REL_TOL})`);
  }
});
