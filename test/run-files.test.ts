// What the runs view, the CodeLens and the dashboard read from a run folder
// (src/extension/runFiles.ts, no vscode): status from the files a real `met train` wrote, per-exit
// accuracy from summary.json or the last epoch of metrics.jsonl, the incremental metrics.jsonl
// scan, and the link from a run to its config file (`configFile` in config.json). Also the run
// folder's schema (src/engine/run/runFolder.ts) against what a real run wrote.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as esbuild from 'esbuild';
import { lastEpochEvent, readRun } from '../src/extension/runFiles';
import {
  chosenOperatingPoint,
  isRunConfig,
  type PredictionsFile,
  readJson,
  readRunConfig,
  readRunStatus,
  readThresholds,
  RUN_FILE,
  RUN_STATUS_FILE,
  RUN_VERSION,
  type RunConfigFile,
  type RunReportFile,
  type RunSummary,
  TRAIN_LOG_FILE,
} from '../src/engine/run/runFolder';
import type { TrainEvent } from '../src/engine/train/trainer';
import { met, ROOT, tinyRun } from './tiny-run';

type Epoch = Extract<TrainEvent, { type: 'epoch' }>;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'met-runfiles-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of the tiny run changed by `edit`: the same files in another state. */
async function variant(name: string, edit: (dir: string) => void): Promise<string> {
  const dir = path.join(tmp, name);
  fs.cpSync((await tinyRun()).run, dir, { recursive: true });
  edit(dir);
  return dir;
}
const age = (file: string, ms: number) => {
  const t = new Date(Date.now() - ms);
  fs.utimesSync(file, t, t);
};
const epochsOf = (dir: string) =>
  fs
    .readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"type":"epoch"'))
    .map((l) => JSON.parse(l) as Epoch);

test('a finished run: done, with the test accuracy of summary.json per exit', async () => {
  const { run } = await tinyRun();
  const r = (await readRun(run))!;
  const summary = JSON.parse(fs.readFileSync(path.join(run, 'summary.json'), 'utf8')) as RunSummary;
  assert.equal(r.status, 'done');
  assert.equal(r.accuracySource, 'test');
  assert.deepEqual(
    r.accuracy.map((a) => a.accuracy),
    summary.exits.map((e) => e.accuracy),
  );
  assert.deepEqual(
    r.accuracy.map((a) => a.layer),
    summary.exits.map((e) => e.layer),
  );
  assert.deepEqual(
    r.accuracy.map((a) => a.gflops),
    summary.exits.map((e) => e.gflops),
  );
  assert.equal(r.epoch, r.epochs);
  assert.equal(r.name, path.basename(run));
});

test('runs from before run.lock and status.json, without summary.json: stopped (checkpoint), failed (none), running (metrics.jsonl just written), starting (no metrics yet)', async () => {
  const legacy = (d: string) => fs.rmSync(path.join(d, RUN_STATUS_FILE));
  const stopped = await variant('stopped', (d) => {
    legacy(d);
    fs.rmSync(path.join(d, 'summary.json'));
    age(path.join(d, 'metrics.jsonl'), 3600_000);
  });
  const s = (await readRun(stopped))!;
  assert.equal(s.status, 'stopped');
  assert.equal(s.resumable, true);
  // The accuracy is the validation accuracy of the last epoch in metrics.jsonl.
  const last = epochsOf(stopped).at(-1)!;
  assert.equal(s.accuracySource, 'val');
  assert.deepEqual(
    s.accuracy.map((a) => a.accuracy),
    last.valAccPerExit,
  );
  assert.equal(s.epoch, last.epoch);

  const failed = await variant('failed', (d) => {
    legacy(d);
    fs.rmSync(path.join(d, 'summary.json'));
    fs.rmSync(path.join(d, 'checkpoint.safetensors'));
    age(path.join(d, 'metrics.jsonl'), 3600_000);
  });
  assert.equal((await readRun(failed))!.status, 'failed');
  assert.equal((await readRun(failed))!.resumable, false);

  const running = await variant('running', (d) => {
    legacy(d);
    fs.rmSync(path.join(d, 'summary.json'));
  });
  assert.equal((await readRun(running))!.status, 'running', 'another process writes metrics.jsonl right now');

  // config.json just written, no metrics.jsonl yet: decoding images / compiling, not dead.
  const starting = await variant('starting', (d) => {
    legacy(d);
    for (const f of ['summary.json', 'metrics.jsonl', 'checkpoint.safetensors']) fs.rmSync(path.join(d, f));
  });
  assert.equal((await readRun(starting))!.status, 'starting');
  age(path.join(starting, 'config.json'), 3600_000);
  assert.equal((await readRun(starting))!.status, 'failed', 'an old run that never got to train');
});

test('runs with run.lock and status.json: a live owner trains, a gone one left it stopped at once, the last owner says how it ended', async () => {
  const lock = (d: string, pid: number, command = 'met train') =>
    fs.writeFileSync(
      path.join(d, 'run.lock'),
      JSON.stringify({ pid, host: os.hostname(), since: new Date().toISOString(), command }),
    );
  const status = (d: string, patch: Record<string, unknown>) =>
    fs.writeFileSync(path.join(d, RUN_STATUS_FILE), JSON.stringify({ ...readRunStatus(d), ...patch }));
  const deadPid = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();

  // Metrics untouched for an hour, but its owner lives (a slow step): running.
  const slow = await variant('slow', (d) => {
    fs.rmSync(path.join(d, 'summary.json'));
    age(path.join(d, 'metrics.jsonl'), 3600_000);
    status(d, { phase: 'training' });
    lock(d, process.pid);
  });
  assert.equal((await readRun(slow))!.status, 'running');
  // Its owner killed (the lock stays, the pid is gone): stopped and resumable, without waiting.
  lock(slow, Number(deadPid));
  const gone = (await readRun(slow))!;
  assert.equal(gone.status, 'stopped');
  assert.equal(gone.resumable, true);
  assert.equal(
    gone.reason,
    `the training process (pid ${deadPid}) ended without finishing (killed or crashed); Resume continues from its last checkpoint`,
  );
  // The same with metrics written just now (the old heuristic would have said running for 2 minutes).
  fs.utimesSync(path.join(slow, 'metrics.jsonl'), new Date(), new Date());
  assert.equal((await readRun(slow))!.status, 'stopped');

  // A finished run being re-evaluated by `met eval` (its lock) is still done.
  const evaluating = await variant('evaluating', (d) => lock(d, process.pid, 'met eval'));
  assert.equal((await readRun(evaluating))!.status, 'done');

  // No lock: the last owner's final phase, with its words.
  const cancelled = await variant('cancelled', (d) => {
    fs.rmSync(path.join(d, 'summary.json'));
    status(d, { phase: 'stopped', stopped: 'cancelled in VS Code' });
  });
  const c = (await readRun(cancelled))!;
  assert.deepEqual([c.status, c.reason, c.resumable], ['stopped', 'cancelled in VS Code', true]);
  const diverged = await variant('diverged', (d) => {
    fs.rmSync(path.join(d, 'summary.json'));
    fs.rmSync(path.join(d, 'checkpoint.safetensors'));
    status(d, { phase: 'failed', error: { message: 'training stopped: the loss is not finite at step 3' } });
  });
  const f = (await readRun(diverged))!;
  assert.deepEqual(
    [f.status, f.reason, f.resumable],
    ['failed', 'training stopped: the loss is not finite at step 3', false],
  );
  // A phase that is not final and no lock: the process died after letting go of the lock.
  const crashed = await variant('crashed', (d) => {
    fs.rmSync(path.join(d, 'summary.json'));
    status(d, { phase: 'training' });
  });
  assert.equal((await readRun(crashed))!.status, 'stopped');
});

test("this window's live state wins, with progress from the last step event", async () => {
  const dir = await variant('live', (d) => fs.rmSync(path.join(d, 'summary.json')));
  const step: Extract<TrainEvent, { type: 'step' }> = {
    type: 'step',
    epoch: 1,
    step: 3,
    totalSteps: 12,
    loss: 1,
    lossPerExit: [],
    gr: [],
    accPerExit: [],
    lr: 0,
    imgPerSec: 40,
    etaSec: 9,
  };
  const r = (await readRun(dir, { state: { runDir: dir, status: 'running', last: {} }, lastStep: step }))!;
  assert.equal(r.status, 'running');
  assert.deepEqual(r.progress, { fraction: 0.25, imgPerSec: 40, etaSec: 9 });
  const f = (await readRun(dir, { state: { runDir: dir, status: 'failed', last: {}, error: 'engine exited' } }))!;
  assert.equal(f.status, 'failed');
  assert.equal(f.reason, 'engine exited');
  // 'done' from the engine before summary.json exists means it is still evaluating.
  assert.equal((await readRun(dir, { state: { runDir: dir, status: 'done', last: {} } }))!.status, 'running');
});

test('a folder whose config.json is not a MET run is not a run', async () => {
  const dir = path.join(tmp, 'other');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "vit"}');
  assert.equal(await readRun(dir), null);
  assert.equal(await readRun(path.join(tmp, 'missing')), null);
});

test('lastEpochEvent reads only what was appended, and only whole lines', async () => {
  const dir = await variant('scan', () => {});
  const file = path.join(dir, 'metrics.jsonl');
  const size = () => fs.statSync(file).size;
  const first = epochsOf(dir).at(-1)!;
  assert.deepEqual(await lastEpochEvent(file, size()), first);
  const next: Epoch = { ...first, epoch: first.epoch + 1, valAccPerExit: first.valAccPerExit.map(() => 0.5) };
  const line = JSON.stringify(next) + '\n';
  // Half a line: not an event yet.
  fs.appendFileSync(file, line.slice(0, 20));
  assert.deepEqual(await lastEpochEvent(file, size()), first);
  fs.appendFileSync(file, line.slice(20));
  assert.deepEqual(await lastEpochEvent(file, size()), next);
  // Step lines after it keep it the last epoch.
  fs.appendFileSync(file, JSON.stringify({ type: 'step', epoch: 3, step: 99 }) + '\n');
  assert.deepEqual(await lastEpochEvent(file, size()), next);
  // The file replaced by a shorter one (a new run in the same folder) is read afresh.
  fs.writeFileSync(file, JSON.stringify(first) + '\n');
  assert.deepEqual(await lastEpochEvent(file, size()), first);
});

test('met train --config records the config file in the run; flags alone do not', async () => {
  const t = await tinyRun();
  assert.equal(
    (JSON.parse(fs.readFileSync(path.join(t.run, 'config.json'), 'utf8')) as RunConfigFile).configFile,
    undefined,
  );
  const cfgDir = path.join(tmp, 'cfg');
  fs.mkdirSync(cfgDir);
  const cfg = path.join(cfgDir, 'tiny.met.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({ data: t.data, weights: t.weights, heads: 2, epochs: 1, batch: 8, threads: 1 }),
  );
  const out = path.join(tmp, 'from-config');
  const r = met(['train', '--config', cfg, '--out', out]);
  assert.equal(r.code, 0, r.err);
  const rec = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as RunConfigFile;
  assert.equal(rec.configFile, cfg);
  assert.equal((await readRun(out))!.config.configFile, cfg);
});

test('a finished run holds exactly the files runFolder.ts names, readable as its types', async () => {
  const { run } = await tinyRun();
  // Plus what the training that made it left for followers: status.json (phase 'done') and train.log.
  assert.deepEqual(fs.readdirSync(run).sort(), [...Object.values(RUN_FILE), RUN_STATUS_FILE, TRAIN_LOG_FILE].sort());
  assert.equal(readRunStatus(run)?.phase, 'done');
  const cf = readRunConfig(run);
  assert.equal(cf.version, RUN_VERSION);
  assert.ok(isRunConfig(cf));
  const report = readJson<RunReportFile>(path.join(run, RUN_FILE.report));
  assert.deepEqual(report.notes, cf.dataset.notes);
  const pred = readJson<PredictionsFile>(path.join(run, RUN_FILE.predictions));
  assert.deepEqual(pred.exits, cf.met.exits);
  assert.deepEqual(pred.classes, cf.classes);
  for (const split of ['val', 'test'] as const) {
    assert.equal(pred[split].files.length, cf.dataset.counts[split]);
    assert.equal(pred[split].conf.length, cf.met.exits.length);
  }
  const th = readThresholds(run)!;
  const summary = readJson<RunSummary>(path.join(run, RUN_FILE.summary));
  assert.deepEqual(
    th.gflops,
    summary.exits.map((e) => e.gflops),
  );
  const op = chosenOperatingPoint(th, cf.met.exits.length);
  assert.equal(op.perExit[th.exits[th.exits.length - 1]], -Infinity, 'the last used exit takes everyone');
});

test('run folder reads name the folder or file at fault', async () => {
  const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
  assert.throws(
    () => readRunConfig(empty),
    (e: Error) => e.message === `${path.join(empty, 'config.json')} does not exist`,
  );
  assert.equal(readThresholds(empty), null, 'a run without thresholds.json has not been evaluated');
  const future = await variant('future-format', (d) => {
    const f = path.join(d, RUN_FILE.config);
    fs.writeFileSync(f, JSON.stringify({ ...(JSON.parse(fs.readFileSync(f, 'utf8')) as RunConfigFile), version: 99 }));
  });
  assert.throws(
    () => readRunConfig(future),
    (e: Error) =>
      e.name === 'UserError' && e.message === `${future}: run format 99 is not supported (expected ${RUN_VERSION})`,
  );
  const broken = path.join(tmp, 'broken.json');
  fs.writeFileSync(broken, '{"version": 1,');
  assert.throws(
    () => readJson(broken),
    (e: Error) => e.message.startsWith(`${broken}: not valid JSON`),
  );
});

test('runFiles.ts (extension host) bundles without onnxruntime or sharp', async () => {
  const r = await esbuild.build({
    entryPoints: [path.join(ROOT, 'src/extension/runFiles.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
  });
  assert.ok(!/onnxruntime|require\("sharp"\)/.test(r.outputFiles[0].text), 'no native package in the bundle');
});
