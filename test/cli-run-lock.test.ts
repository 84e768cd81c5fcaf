// Runs do not overwrite runs (issue 11, finding 2), driven as a user drives them: real `met`
// processes on the tiny run (test/tiny-run.ts). Before run.lock, `met train --out <a finished
// run>` exited 0 and replaced its files, two `met train --out same` at once both exited 0 with
// metrics.jsonl interleaved, and `met eval` wrote predictions.json into a run still training.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { pidAlive } from '../src/engine/run/lock';
import { readLock, RUN_FILE, RUN_LOCK_FILE } from '../src/engine/run/runFolder';
import { met, MET, tinyRun } from './tiny-run';

/** Every file of a folder with its bytes, to show that a refused command touched nothing. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(dir)
      .sort()
      .map((n) => [n, fs.readFileSync(path.join(dir, n)).toString('base64')]),
  );
}

function copyRun(src: string, name: string): string {
  const dst = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'met-lockrun-')), name);
  process.on('exit', () => fs.rmSync(path.dirname(dst), { recursive: true, force: true }));
  fs.cpSync(src, dst, { recursive: true });
  return dst;
}

/** A live process that is not a met (it only sleeps), to stand for a run's owner. */
function liveOwner(t: { after: (f: () => void) => void }): number {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
  t.after(() => c.kill('SIGKILL'));
  return c.pid!;
}

function lockAs(dir: string, pid: number): void {
  const lock = { pid, host: os.hostname(), since: '2026-12-07T10:00:00.000Z', command: 'met train' };
  fs.writeFileSync(path.join(dir, RUN_LOCK_FILE), JSON.stringify(lock));
}

function metAsync(args: string[]): Promise<{ code: number; err: string }> {
  const c = spawn(process.execPath, [MET, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  c.stderr.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((res) => c.on('exit', (code) => res({ code: code ?? -1, err })));
}

test('met train --out <a finished run> refuses and changes nothing; --overwrite moves the old run aside', async () => {
  const t = await tinyRun();
  const run = copyRun(t.run, 'run');
  const before = snapshot(run);
  const args = ['train', '--data', t.data, '--weights', t.weights, ...t.trainFlags, '--out', run];
  const r = met(args);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /already holds a run: continue it with --resume .*--overwrite/);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  assert.deepEqual(snapshot(run), before);

  const o = met([...args, '--overwrite']);
  assert.equal(o.code, 0, o.err);
  assert.match(o.err, /moved to .*run\.old-/);
  const aside = fs.readdirSync(path.dirname(run)).filter((n) => n.startsWith('run.old-'));
  assert.equal(aside.length, 1);
  assert.deepEqual(snapshot(path.join(path.dirname(run), aside[0])), before, 'the old run, whole and untouched');
  assert.ok(fs.existsSync(path.join(run, RUN_FILE.summary)));
  assert.equal(readLock(run), null, 'released when the run is done');
});

test('two met train --out same at once: one trains, the other is refused; metrics.jsonl holds one run', async () => {
  const t = await tinyRun();
  const run = path.join(path.dirname(copyRun(t.run, 'x')), 'same');
  const args = ['train', '--data', t.data, '--weights', t.weights, ...t.trainFlags, '--out', run];
  const [a, b] = await Promise.all([metAsync(args), metAsync(args)]);
  const codes = [a.code, b.code].sort();
  assert.deepEqual(codes, [0, 1], `${a.err}\n----\n${b.err}`);
  const loser = a.code === 1 ? a : b;
  assert.match(loser.err, /in use by met train \(pid \d+ on .*, since .*\)|already holds a run/);
  const events = fs
    .readFileSync(path.join(run, RUN_FILE.metrics), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; step?: number; totalSteps?: number });
  const steps = events.filter((e) => e.type === 'step');
  assert.equal(steps.length, steps[0].totalSteps, 'each step once: no second run interleaved');
  assert.deepEqual(
    steps.map((e) => e.step),
    steps.map((_, i) => i + 1),
  );
  assert.equal(readLock(run), null);
});

test('met eval and met train --resume on a run another live process owns refuse with the owner named', async (t) => {
  const tr = await tinyRun();
  const run = copyRun(tr.run, 'run');
  const pid = liveOwner(t);
  lockAs(run, pid);
  const before = snapshot(run);
  const owner = new RegExp(`in use by met train \\(pid ${pid} on ${os.hostname()}, since 2026-12-07T10:00:00.000Z\\)`);
  const e = met(['eval', '--run', run, '--threads', '1']);
  assert.equal(e.code, 1, e.err);
  assert.match(e.err, owner);
  const r = met(['train', '--resume', run]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, owner);
  assert.deepEqual(snapshot(run), before, 'predictions.json, thresholds.json, metrics.jsonl untouched');
  assert.ok(pidAlive(pid));
});

test('met eval on a run whose owner is gone breaks the stale lock, removes dead temporaries and evaluates', async () => {
  const tr = await tinyRun();
  const run = copyRun(tr.run, 'run');
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((res) => dead.on('exit', res));
  lockAs(run, dead.pid!);
  const tmp = `${RUN_FILE.checkpoint}.tmp-${dead.pid}-2`;
  fs.writeFileSync(path.join(run, tmp), 'half a checkpoint');
  const e = met(['eval', '--run', run, '--threads', '1']);
  assert.equal(e.code, 0, e.err);
  assert.ok(!fs.existsSync(path.join(run, tmp)), 'the dead run’s temporary is gone');
  assert.equal(readLock(run), null);
});
