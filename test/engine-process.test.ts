// The engine process (`dist/cli.js engine`) spoken to over Node IPC exactly as the extension
// does (src/protocol.ts), without VS Code: the ready handshake, train/resolve on a generated
// folder with the bundled tiny ViT, a training cancelled by message that stops with a checkpoint
// and resumes to the end, params/compute equal to `met params --json`, errors as error
// responses, and an engine killed mid-request rejecting it instead of hanging.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEMO_CLASSES } from '../src/engine/demo/shapes';
import type { TrainEvent } from '../src/engine/train/trainer';
import { PROTOCOL_VERSION, type RequestMethod } from '../src/protocol';
import { Engine, shapesWorkspace, TINY_VIT } from './engine-ipc';
import { met } from './tiny-run';

const workspace = () => shapesWorkspace('met-engine-', 24, 3);

test('engine: ready handshake, resolve, cancel by message, resume, params, errors', async () => {
  const ws = await workspace();
  const e = new Engine(ws.root);
  const ready = await e.ready;
  assert.equal(ready.protocol, PROTOCOL_VERSION);
  assert.equal(ready.pid, e.child.pid);

  // Resolve: the picked folder and weights, heads from the tiny ViT's config.json (an unset
  // override, undefined on the host, is not an error).
  const r = await e.request('train/resolve', {
    data: ws.data,
    weights: TINY_VIT,
    workspaceRoot: ws.root,
    overrides: { epochs: 2, batch: 8, threads: 1, lr: 0.005, imageSize: undefined },
  });
  assert.deepEqual(r.classes, DEMO_CLASSES.slice(0, 3));
  assert.equal(r.backbone.heads, 4);
  assert.deepEqual(r.exits, [1, 2, 3, 4, 5, 6]);
  assert.equal(r.counts.train + r.counts.val + r.counts.test, 72);
  assert.ok(r.config.out!.startsWith(path.join(ws.root, '.met', 'runs')), r.config.out);
  assert.equal(r.config.epochs, 2);

  // Cancel by message after the third step: a stopped, checkpointed run.
  e.onEvent = (ev) => {
    if (ev.type === 'step' && ev.step === 3) void e.request('train/cancel', { reason: 'test cancel' });
  };
  const stopped = await e.request('train/start', { config: r.config });
  assert.equal(stopped.runDir, r.config.out);
  assert.equal(stopped.stopped, 'test cancel');
  const totalSteps = (e.events.find((x) => x.event.type === 'start')!.event as Extract<TrainEvent, { type: 'start' }>)
    .totalSteps;
  const lastStep = Math.max(
    ...e.events.filter((x) => x.event.type === 'step').map((x) => (x.event as { step: number }).step),
  );
  assert.ok(lastStep >= 3 && lastStep < totalSteps, `stopped at step ${lastStep} of ${totalSteps}`);
  assert.ok(fs.existsSync(path.join(stopped.runDir, 'checkpoint.safetensors')));
  assert.ok(!fs.existsSync(path.join(stopped.runDir, 'summary.json')));
  assert.ok(e.events.every((x) => x.runDir === stopped.runDir));

  // Resume in the same engine: continues from the checkpoint to the end.
  e.onEvent = () => undefined;
  e.events.length = 0;
  const done = await e.request('train/start', { resumeDir: stopped.runDir });
  assert.equal(done.stopped, null);
  const start = e.events.find((x) => x.event.type === 'start')!.event as Extract<TrainEvent, { type: 'start' }>;
  assert.equal(start.startStep, lastStep);
  assert.equal(done.summary.exits.length, 6);
  assert.ok(fs.existsSync(path.join(done.runDir, 'summary.json')));

  // params/compute is `met params --json` for the same settings.
  const settings = { data: ws.data, weights: TINY_VIT, heads: 4 };
  const p = await e.request('params/compute', { settings });
  const cli = met(['params', '--data', ws.data, '--weights', TINY_VIT, '--heads', '4', '--json']);
  assert.equal(cli.code, 0, cli.err);
  assert.deepEqual(p, JSON.parse(cli.out));

  // Errors come back as error responses naming the problem; the engine stays up.
  await assert.rejects(
    e.request('train/resolve', { data: path.join(ws.root, 'nope'), weights: TINY_VIT, workspaceRoot: ws.root }),
    (err: Error) => err.name === 'UserError' && /nope/.test(err.message),
  );
  await assert.rejects(e.request('nope/nope' as RequestMethod, {} as never), /unknown method 'nope\/nope'/);
  await assert.rejects(
    e.request('train/resolve', { data: ws.data, weights: TINY_VIT, workspaceRoot: ws.root, overrides: { rank: -1 } }),
    /field 'rank'/,
  );
  const gpu = await e.request('gpu/check', {});
  assert.equal(gpu.statuses.find((s) => s.provider === 'cpu')?.available, true);
  assert.ok(['cpu', 'cuda', 'webgpu'].includes(gpu.auto));

  // Shutdown: answers, then the process exits 0.
  assert.deepEqual(await e.request('engine/shutdown', {}), { ok: true });
  assert.deepEqual(await e.exit, { code: 0, signal: null });
});

test('engine: a killed engine rejects the pending request; without IPC it refuses to run', async () => {
  const ws = await workspace();
  const e = new Engine(ws.root);
  await e.ready;
  const r = await e.request('train/resolve', {
    data: ws.data,
    weights: TINY_VIT,
    workspaceRoot: ws.root,
    overrides: { epochs: 50, batch: 4, threads: 1 },
  });
  let killed = false;
  e.onEvent = (ev) => {
    if (ev.type === 'step' && !killed) {
      killed = true;
      e.child.kill('SIGKILL');
    }
  };
  await assert.rejects(e.request('train/start', { config: r.config }), /engine exited \(SIGKILL\)/);
  assert.deepEqual(await e.exit, { code: null, signal: 'SIGKILL' });

  const plain = met(['engine']);
  assert.equal(plain.code, 1);
  assert.match(plain.err, /only runs forked with an IPC channel/);
});
