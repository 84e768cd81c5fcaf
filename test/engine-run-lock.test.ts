// The extension's training path (the engine's train/start) gets the same refusals as `met train`
// (issue 11, finding 2), as error responses carrying the UserError code the extension branches
// on: 'run-exists' for a new run whose folder holds one, 'run-locked' (owner named) for a resume
// of a run another live process owns. Needs dist/cli.js (npm test builds it first).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { readJson, RUN_FILE, RUN_LOCK_FILE, type RunConfigFile } from '../src/engine/run/runFolder';
import { Engine } from './engine-ipc';
import { tinyRun } from './tiny-run';

test('engine train/start: run-exists for a folder holding a run, run-locked for a resume of an owned run', async (t) => {
  const tr = await tinyRun();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'met-engine-lock-'));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  const run = path.join(root, 'run');
  fs.cpSync(tr.run, run, { recursive: true });
  const before = fs.readFileSync(path.join(run, RUN_FILE.metrics), 'utf8');
  const cf = readJson<RunConfigFile>(path.join(run, RUN_FILE.config));

  const e = new Engine(root);
  t.after(() => e.child.kill('SIGKILL'));
  await e.ready;
  await assert.rejects(e.request('train/start', { config: { ...cf.train, out: run } }), (err: Error) => {
    assert.equal(err.name, 'UserError');
    assert.equal((err as Error & { code?: string }).code, 'run-exists');
    assert.match(err.message, /already holds a run/);
    return true;
  });

  const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
  t.after(() => owner.kill('SIGKILL'));
  const lock = { pid: owner.pid, host: os.hostname(), since: '2026-12-07T10:00:00.000Z', command: 'met train' };
  fs.writeFileSync(path.join(run, RUN_LOCK_FILE), JSON.stringify(lock));
  await assert.rejects(e.request('train/start', { resumeDir: run }), (err: Error) => {
    assert.equal(err.name, 'UserError');
    assert.equal((err as Error & { code?: string }).code, 'run-locked');
    assert.match(err.message, new RegExp(`in use by met train \\(pid ${owner.pid} on `));
    return true;
  });
  assert.equal(fs.readFileSync(path.join(run, RUN_FILE.metrics), 'utf8'), before, 'metrics.jsonl untouched');
  // The engine is still there for the next request.
  await assert.rejects(e.request('train/start', { resumeDir: run }), /in use by/);
});
