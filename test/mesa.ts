// Mesa's lavapipe for the WebGPU tests: scripts/setup-webgpu.sh unpacks Mesa 25 into .cache/mesa,
// whose env.sh must be in effect before onnxruntime loads (so the WebGPU work runs in child
// processes started with mesaEnv()). Shared by test/runtime-device.test.ts and
// test/webgpu-parity.test.ts.

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = path.resolve(__dirname, '..');
export const ENV_SH = path.join(ROOT, '.cache', 'mesa', 'env.sh');

/**
 * True when the Mesa setup is there. Otherwise the test is skipped with the reason, or fails
 * when MET_REQUIRE_WEBGPU=1 (CI, after the setup script).
 */
export function haveMesa(t: TestContext): boolean {
  if (fs.existsSync(ENV_SH)) return true;
  const msg = `${path.relative(ROOT, ENV_SH)} not found: run scripts/setup-webgpu.sh to install a software Vulkan driver for the WebGPU tests`;
  if (process.env.MET_REQUIRE_WEBGPU === '1') assert.fail(`MET_REQUIRE_WEBGPU=1 but ${msg}`);
  t.skip(msg);
  return false;
}

/** `base` after sourcing .cache/mesa/env.sh (bash evaluates it, as a user's shell would). */
export function mesaEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const r = spawnSync('bash', ['-c', '. "$1" && env -0', 'env', ENV_SH], { env: base, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sourcing ${ENV_SH} failed: ${r.stderr}`);
  const env: NodeJS.ProcessEnv = {};
  for (const kv of r.stdout.split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}
