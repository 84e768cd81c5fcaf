// Trainings that outlive their window (issue 11): `met engine --detached` started as the
// extension starts it, and followed through the run folder alone (engine/run/follow.ts), as a
// reloaded window follows it.
//
// - Its host (a stand-in for the extension host, in a process of its own) is SIGKILLed right
//   after the run folder was claimed: the training goes on, a follower that attaches later
//   sees its steps, and it finishes with the same weights as an uninterrupted run.
// - The training process is SIGKILLed: the follower reports the run stopped (with a checkpoint
//   to resume) within a poll, readRun (the Runs view) says stopped and resumable at once, and a
//   resume finishes it to the same weights.
// - stop.request (Cancel in any window): stopped after the step with a checkpoint. A closing
//   window's conditional request is withdrawn by a window that attaches within the grace, else
//   it stops the training after the grace.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainConfig } from '../src/engine/run/config';
import { type FollowEnd, RunFollower } from '../src/engine/run/follow';
import { pidAlive } from '../src/engine/run/lock';
import { readRunStatus, requestStop, withdrawStopRequest } from '../src/engine/run/runFolder';
import type { TrainEvent } from '../src/engine/train/trainer';
import { readRun } from '../src/extension/runFiles';
import { CLI, Engine, shapesWorkspace, TINY_VIT } from './engine-ipc';
import { met } from './tiny-run';

interface Ws {
  root: string;
  data: string;
}

let shared: Promise<Ws> | null = null;
const workspace = (): Promise<Ws> => (shared ??= shapesWorkspace('met-detached-', 12, 5));

/** The resolved settings of a run in `out` (epochs of 7 steps, one thread). */
async function plan(ws: Ws, out: string, epochs = 8): Promise<TrainConfig> {
  const e = new Engine(ws.root);
  await e.ready;
  try {
    const r = await e.request('train/resolve', {
      data: ws.data,
      weights: TINY_VIT,
      workspaceRoot: ws.root,
      overrides: { epochs, batch: 4, threads: 1, out },
    });
    return r.config;
  } finally {
    e.child.kill();
  }
}

/** The uninterrupted run of the same settings (once per output folder name). */
const references = new Map<string, Promise<Buffer>>();
function referenceWeights(ws: Ws): Promise<Buffer> {
  const key = ws.root;
  if (!references.has(key))
    references.set(
      key,
      (async () => {
        const out = path.join(ws.root, 'reference');
        const config = await plan(ws, out);
        const e = new Engine(ws.root);
        await e.ready;
        await e.request('train/start', { config });
        e.child.kill();
        return fs.readFileSync(path.join(out, 'trainable.safetensors'));
      })(),
    );
  return references.get(key)!;
}

/**
 * Starts `met engine --detached` from a host process of its own, as the extension does (fork,
 * detached, train/start, disconnect once 'train/started' says the folder is claimed). Resolves with the training's
 * pid once claimed; `killHost` then SIGKILLs the host (a window killed) instead of letting it end.
 */
async function launchDetached(ws: Ws, config: TrainConfig, killHost: boolean): Promise<number> {
  const host = `
    const { fork } = require('node:child_process');
    const c = fork(${JSON.stringify(CLI)}, ['engine', '--detached'], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    c.stdout.resume(); c.stderr.resume();
    c.on('message', (m) => {
      if (m.method === 'ready') c.send({ id: 1, method: 'train/start', params: { config: ${JSON.stringify(config)} } });
      else if (m.method === 'train/started') {
        console.log(JSON.stringify({ runDir: m.params.runDir, pid: m.params.pid }));
        if (${killHost}) setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50);
        else { c.disconnect(); c.unref(); c.stdout.destroy(); c.stderr.destroy(); }
      } else if (m.id === 1 && m.error) { console.log(JSON.stringify(m.error)); process.exit(1); }
    });`;
  const h = spawn(process.execPath, ['-e', host], { cwd: ws.root, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    h.stdout.setEncoding('utf8').once('data', (d: string) => resolve(d));
    h.once('exit', (c) => reject(new Error(`host exited (${c}) before the claim`)));
  });
  const claimed = JSON.parse(line) as { runDir: string; pid: number };
  assert.equal(claimed.runDir, config.out);
  await new Promise<void>((r) => h.once('exit', () => r()));
  return claimed.pid;
}

/** Polls a follower until its owner is gone; returns the events seen and the end. */
async function followToEnd(
  f: RunFollower,
  onEvent: (e: TrainEvent) => void = () => undefined,
  timeoutMs = 180_000,
): Promise<{ events: TrainEvent[]; end: FollowEnd; log: string[] }> {
  const events: TrainEvent[] = [];
  const log: string[] = [];
  const t0 = Date.now();
  for (;;) {
    const u = await f.poll();
    for (const e of u.events) {
      events.push(e);
      onEvent(e);
    }
    log.push(...u.log);
    if (u.end) return { events, end: u.end, log };
    assert.ok(Date.now() - t0 < timeoutMs, `${f.runDir}: still training after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function untilStep(runDir: string, n: number): Promise<void> {
  const f = path.join(runDir, 'metrics.jsonl');
  const t0 = Date.now();
  while (!(fs.existsSync(f) && fs.readFileSync(f, 'utf8').split('"type":"step"').length - 1 >= n)) {
    assert.ok(Date.now() - t0 < 120_000, `${runDir}: fewer than ${n} steps in 120 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitGone(pid: number): Promise<void> {
  const t0 = Date.now();
  while (pidAlive(pid)) {
    assert.ok(Date.now() - t0 < 120_000, `pid ${pid} still alive`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('detached training: its host killed right after the claim, it goes on; a late follower sees it finish with the weights of an uninterrupted run', async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'orphan');
  const config = await plan(ws, runDir);
  const pid = await launchDetached(ws, config, true);
  assert.ok(pidAlive(pid), 'the training died with its host');
  // The host is gone; a window opened now finds the training by its lock and follows it.
  await untilStep(runDir, 3);
  const status = readRunStatus(runDir);
  assert.equal(status?.pid, pid);
  assert.equal(status?.command, 'met train (VS Code)');
  const info = await readRun(runDir);
  assert.equal(info?.status, 'running', 'the Runs view reads a live owner as running');
  const f = new RunFollower(runDir, { pid, lastStep: true });
  const { events, end } = await followToEnd(f);
  assert.deepEqual(end, { phase: 'done' });
  assert.equal(events[0].type, 'start', 'the start event (schedule) comes first');
  assert.equal(events[1].type, 'step', 'then the newest step so far, for the status bar');
  const steps = events.filter((e) => e.type === 'step') as Extract<TrainEvent, { type: 'step' }>[];
  assert.ok(steps[0].step >= 3, `the first step followed is ${steps[0].step}, not the newest`);
  assert.ok(steps.length > 3, `only ${steps.length} steps followed`);
  assert.ok(
    steps.every((s, i) => i === 0 || s.step === steps[i - 1].step + 1),
    'steps followed in order, none twice, none missed',
  );
  assert.equal(steps[steps.length - 1].step, steps[steps.length - 1].totalSteps);
  assert.ok(events.some((e) => e.type === 'epoch'));
  await waitGone(pid);
  assert.ok(!fs.existsSync(path.join(runDir, 'run.lock')), 'the lock was released');
  assert.equal(readRunStatus(runDir)?.phase, 'done');
  assert.ok(fs.readFileSync(path.join(runDir, 'train.log'), 'utf8').includes('finished'));
  assert.ok(
    fs.readFileSync(path.join(runDir, 'trainable.safetensors')).equals(await referenceWeights(ws)),
    'weights differ from the uninterrupted run',
  );
});

test('detached training killed: stopped with a checkpoint at once (follower and Runs view); resume finishes to the same weights', async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'killed');
  const config = await plan(ws, runDir);
  const pid = await launchDetached(ws, config, false);
  const f = new RunFollower(runDir, { pid, fromStart: true });
  let killedAt = 0;
  // Killed after the first epoch's checkpoint (7 steps per epoch), in the middle of epoch 2.
  const { end, events } = await followToEnd(f, (e) => {
    if (e.type === 'step' && e.step === 10 && !killedAt) {
      killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
    }
  });
  const noticed = Date.now() - killedAt;
  assert.equal(end.phase, 'stopped', JSON.stringify(end));
  assert.equal(end.unexpected, true);
  // The kill lands at step 10 or a little later (the follower polls every 100 ms): the last
  // checkpoint is the first epoch's (step 7) or, past its end, the second's (step 14).
  const ck = readRunStatus(runDir)?.checkpoint?.step;
  assert.ok(ck === 7 || ck === 14, `last checkpoint at step ${ck}`);
  assert.match(end.reason ?? '', new RegExp(`pid ${pid}.*ended without finishing.*\\(step ${ck}\\)`));
  assert.ok(noticed < 5000, `the follower noticed the kill after ${noticed} ms`);
  assert.ok(events.some((e) => e.type === 'start'));
  assert.ok(events.some((e) => e.type === 'checkpoint' && e.step === ck));
  const info = await readRun(runDir);
  assert.equal(info?.status, 'stopped');
  assert.equal(info?.resumable, true);
  assert.match(info?.reason ?? '', /ended without finishing/);
  const r = met(['train', '--resume', runDir]);
  assert.equal(r.code, 0, r.err);
  assert.ok(
    fs.readFileSync(path.join(runDir, 'trainable.safetensors')).equals(await referenceWeights(ws)),
    'the resumed weights differ from the uninterrupted run',
  );
  const after = await readRun(runDir);
  assert.equal(after?.status, 'done');
  assert.equal(after?.resumable, false);
});

test('stop.request: the detached training stops after its step with a checkpoint and says why', async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'stopped');
  const config = await plan(ws, runDir);
  const pid = await launchDetached(ws, config, false);
  await untilStep(runDir, 2);
  requestStop(runDir, { reason: 'cancelled in VS Code', at: new Date().toISOString(), by: 'a test' });
  const { end } = await followToEnd(new RunFollower(runDir, { pid }));
  assert.deepEqual(end, { phase: 'stopped', reason: 'cancelled in VS Code (a test)' });
  const info = await readRun(runDir);
  assert.equal(info?.status, 'stopped');
  assert.equal(info?.resumable, true);
  assert.ok(!fs.existsSync(path.join(runDir, 'summary.json')));
  // The request is for that owner only: a resume does not stop at its first step.
  const r = met(['train', '--resume', runDir]);
  assert.equal(r.code, 0, r.err);
  assert.ok(fs.existsSync(path.join(runDir, 'summary.json')));
});

test("a closing window's conditional stop: withdrawn by a window that attaches in time, else it stops the run after the grace", async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'closing');
  const config = await plan(ws, runDir, 60);
  const pid = await launchDetached(ws, config, false);
  await untilStep(runDir, 2);
  const closing = () =>
    requestStop(runDir, { reason: 'VS Code was closed', at: new Date().toISOString(), by: 'window 1', graceMs: 1500 });
  closing();
  // A reloaded window attaches and withdraws it well within the grace.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(withdrawStopRequest(runDir, true), true);
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok(pidAlive(pid), 'a withdrawn conditional stop stopped the training');
  assert.equal(readRunStatus(runDir)?.phase, 'training');
  // Nobody attaches this time: it stops after the grace, with a checkpoint.
  const t0 = Date.now();
  closing();
  assert.equal(withdrawStopRequest(runDir, false) && (closing(), true), true, 'a plain withdraw removes it too');
  const { end } = await followToEnd(new RunFollower(runDir, { pid }));
  assert.equal(end.phase, 'stopped');
  assert.match(end.reason ?? '', /VS Code was closed/);
  assert.ok(Date.now() - t0 >= 1400, 'stopped before the grace was over');
  assert.equal((await readRun(runDir))?.resumable, true);
});

test('met stop: a `met train` in another terminal stops after its step with a checkpoint; a run nobody trains is named so', async () => {
  const ws = await workspace();
  const runDir = path.join(ws.root, 'cli-stopped');
  const p = spawn(
    process.execPath,
    [
      CLI,
      'train',
      '--data',
      ws.data,
      '--weights',
      TINY_VIT,
      '--out',
      runDir,
      '--epochs',
      '60',
      '--batch',
      '4',
      '--threads',
      '1',
    ],
    { cwd: ws.root, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  await untilStep(runDir, 3);
  const s = met(['stop', '--run', runDir, '--reason', 'enough']);
  assert.equal(s.code, 0, s.err);
  assert.match(s.err, /asked met train \(pid \d+ .*\) to stop/);
  assert.match(s.err, /stopped \(stopped: enough \(met stop\)\); continue with: met train --resume/);
  assert.equal(await exited, 130, err);
  assert.equal(readRunStatus(runDir)?.phase, 'stopped');
  const again = met(['stop', '--run', runDir]);
  assert.equal(again.code, 1);
  assert.match(again.err, /no training owns it; its last phase: stopped/);
  assert.doesNotMatch(again.err, /\n\s+at /);
});
