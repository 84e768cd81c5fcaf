// The engine process outlives the loss of its controller without losing the run (issue 11,
// finding 1): a real forked `met engine` during a tiny training whose host disconnects, whose
// host is killed outright (the broken channel's EPIPE once crashed it with no checkpoint), or
// that gets SIGTERM, stops after the current step with a checkpoint and exits 0, and
// `met train --resume` finishes the run. `met train` from a terminal does the same on SIGTERM and
// SIGHUP. And the method table: prototype keys are no methods, bad params are named errors.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainConfig } from '../src/engine/run/config';
import type { RequestMethod } from '../src/protocol';
import { CLI, Engine, shapesWorkspace, TINY_VIT } from './engine-ipc';
import { MET, met } from './tiny-run';

const workspace = () => shapesWorkspace('met-engine-life-', 12, 5);

/** A resolved config for a training long enough to be interrupted (6 epochs of 7 steps). */
async function plan(e: Engine, ws: { root: string; data: string }, name: string): Promise<TrainConfig> {
  const r = await e.request('train/resolve', {
    data: ws.data,
    weights: TINY_VIT,
    workspaceRoot: ws.root,
    overrides: { epochs: 6, batch: 4, threads: 1, out: path.join(ws.root, name) },
  });
  return r.config;
}

function resumeToEnd(runDir: string): void {
  assert.ok(fs.existsSync(path.join(runDir, 'checkpoint.safetensors')), `no checkpoint in ${runDir}`);
  assert.ok(!fs.existsSync(path.join(runDir, 'summary.json')), 'the run was not interrupted');
  const r = met(['train', '--resume', runDir, '--threads', '1']);
  assert.equal(r.code, 0, r.err);
  assert.ok(fs.existsSync(path.join(runDir, 'summary.json')));
}

async function interrupted(how: (e: Engine) => void, name: string): Promise<void> {
  const ws = await workspace();
  const e = new Engine(ws.root);
  await e.ready;
  const config = await plan(e, ws, name);
  let fired = false;
  e.onEvent = (ev) => {
    if (ev.type === 'step' && ev.step === 2 && !fired) {
      fired = true;
      how(e);
    }
  };
  const answer = e.request('train/start', { config }).catch(() => undefined);
  const exit = await e.exit;
  await answer;
  assert.deepEqual(exit, { code: 0, signal: null }, e.stderr);
  assert.doesNotMatch(e.stderr, /uncaught|\n\s+at /, e.stderr);
  resumeToEnd(config.out!);
}

test('engine: the host disconnecting mid-training: a checkpoint, exit 0, resumable', async () => {
  await interrupted((e) => e.child.disconnect(), 'disconnected');
});

test('engine: SIGTERM mid-training: a checkpoint, exit 0, resumable', async () => {
  await interrupted((e) => e.child.kill('SIGTERM'), 'sigterm');
});

test('engine: its host killed outright (a broken channel) mid-training: a checkpoint, exit 0, resumable', async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'orphaned');
  const log = path.join(ws.root, 'engine.log');
  // The host: forks the engine as the extension does, starts the training, prints the engine's
  // pid at the first step and is then SIGKILLed (a VS Code window killed), so that the engine's
  // next sends hit a dead pipe.
  const host = `
    const { fork } = require('node:child_process');
    const fs = require('node:fs');
    // stdout and stderr through pipes, as the extension reads them: they break with this process.
    const c = fork(${JSON.stringify(CLI)}, ['engine'], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    c.stdout.resume();
    c.stderr.on('data', (d) => fs.appendFileSync(${JSON.stringify(log)}, d));
    let id = 0, told = false;
    c.on('message', (m) => {
      if (m.method === 'ready') c.send({ id: ++id, method: 'train/resolve', params: { data: ${JSON.stringify(ws.data)}, weights: ${JSON.stringify(TINY_VIT)}, workspaceRoot: ${JSON.stringify(ws.root)}, overrides: { epochs: 6, batch: 4, threads: 1, out: ${JSON.stringify(runDir)} } } });
      else if (m.id === 1) c.send({ id: ++id, method: 'train/start', params: { config: m.result.config } });
      else if (m.method === 'train/event' && m.params.event.type === 'step' && !told) { told = true; console.log(c.pid); }
    });`;
  const h = spawn(process.execPath, ['-e', host], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => h.stdout.once('data', (d: Buffer) => resolve(Number(String(d)))));
  h.kill('SIGKILL');
  // The orphaned engine must end by itself, having written a checkpoint.
  const t0 = Date.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    assert.ok(Date.now() - t0 < 120_000, `engine ${pid} still running 120 s after its host died`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const stderr = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
  assert.doesNotMatch(stderr, /uncaught|\n\s+at /, stderr);
  resumeToEnd(runDir);
});

for (const sig of ['SIGTERM', 'SIGHUP'] as const)
  test(`met train: ${sig} stops after this step with a checkpoint; --resume finishes`, async () => {
    const ws = await workspace();
    const runDir = path.join(ws.root, `cli-${sig}`);
    const args = [MET, 'train', '--data', ws.data, '--weights', TINY_VIT, '--out', runDir];
    const p = spawn(
      process.execPath,
      [...args, '--epochs', '6', '--batch', '4', '--threads', '1', '--progress', 'json'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    let sent = false;
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (!sent && /"type":"step"/.test(d)) {
        sent = true;
        p.kill(sig);
      }
    });
    const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    assert.equal(code, 130, err);
    assert.match(err, new RegExp(`${sig}: saving a checkpoint`));
    resumeToEnd(runDir);
  });

test('engine: prototype keys are no methods; missing or mistyped params are named errors', async () => {
  const ws = await workspace();
  const e = new Engine(ws.root);
  await e.ready;
  const named = (code: string, re: RegExp, field?: string) => (err: Error & { code?: string; field?: string }) => {
    assert.equal(err.name, 'ProtocolError', err.message);
    assert.equal(err.code, code);
    assert.match(err.message, re);
    if (field) assert.equal(err.field, field);
    return true;
  };
  for (const m of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf'])
    await assert.rejects(e.request(m as RequestMethod, {} as never), named('method-unknown', new RegExp(`'${m}'`)));
  await assert.rejects(
    e.request('train/resolve', {} as never),
    named('params-invalid', /'workspaceRoot' is required/, 'workspaceRoot'),
  );
  await assert.rejects(
    e.request('inspect/score', { runDir: ws.root } as never),
    named('params-invalid', /'files'/, 'files'),
  );
  await assert.rejects(
    e.request('inspect/thumbs', { files: [1], cacheDir: ws.root } as never),
    named('params-invalid', /'files' must be a list of file paths/, 'files'),
  );
  await assert.rejects(
    e.request('similarity/compute', { runDir: ws.root, exits: [0], split: 'all' } as never),
    named('params-invalid', /'split' must be one of/, 'split'),
  );
  await assert.rejects(e.request('gpu/check', null as never), named('params-invalid', /params must be an object/));
  await assert.rejects(
    e.request('train/cancel', { reason: 'x', extra: 1 } as never),
    named('params-invalid', /unknown field 'extra'/, 'extra'),
  );
  // No raw TypeError and no stack in any of them; the engine is still up and answers.
  assert.doesNotMatch(e.stderr, /TypeError|\n\s+at /);
  assert.deepEqual(await e.request('train/cancel', {}), { wasRunning: false });
  assert.deepEqual(await e.request('engine/shutdown', {}), { ok: true });
  assert.deepEqual(await e.exit, { code: 0, signal: null });
});
