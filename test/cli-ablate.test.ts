// `met ablate` as a user runs it (child processes, the tiny generated folder of tiny-run.ts): the
// study folder and its table, the table against `met eval --json` of each run, and a study
// killed in the middle that the same command finishes without retraining what was done.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { splitVariants } from '../src/cli/ablate';
import { TRAIN_DEFAULTS } from '../src/engine/run/config';
import { parseVariant, readStudy, studyVariants } from '../src/engine/study/study';
import { met, MET, tinyRun } from './tiny-run';

interface StudyJson {
  study: string;
  runs: {
    variant: string;
    run: string;
    exits: { exit: number; layer: number; accuracy: number; gflops: number }[];
    mean: number;
    trainable: number;
    dynamic: { p: number; accuracy: number; gflops: number }[];
  }[];
  table: { columns: { key: string }[]; rows: { name: string; values: (number | null)[] }[]; best: number[][] };
  settingsDiff: { key: string; values: Record<string, unknown> }[];
}

interface EvalJson {
  exits: { exit: number; layer: number; accuracy: number; gflops: number }[];
  dynamic: { p: number; accuracy: number; gflops: number }[];
}

async function base(): Promise<string[]> {
  const t = await tinyRun();
  return ['--data', t.data, '--weights', t.weights, ...t.trainFlags];
}

test('--variants: names, :key=value settings and commas inside values', () => {
  assert.deepEqual(splitVariants('met,no_gr,met:exits=1,3,linear_probe'), [
    'met',
    'no_gr',
    'met:exits=1,3',
    'linear_probe',
  ]);
  const v = parseVariant('met:gr-form=ratio:lambda=0.1:sim-clamp=affine');
  assert.deepEqual(v.overrides, { variant: 'met', grForm: 'ratio', lambda: 0.1, simClamp: 'affine' });
  assert.equal(v.run, 'met+gr-form=ratio+lambda=0.1+sim-clamp=affine');
  assert.deepEqual(parseVariant('mha_only').overrides, { variant: 'met', eaPositions: 'mha' });
  assert.throws(() => parseVariant('nope'), /unknown variant 'nope'/);
  assert.throws(() => parseVariant('met:lambda=abc'), /'abc' is not a number/);
  assert.throws(() => parseVariant('met:lambda=-1'), /field 'lambda'/);
  assert.throws(() => parseVariant('met:data=x'), /shared by the whole study/);
  assert.deepEqual(
    studyVariants({ variants: ['met'], lambdas: [0.1], ranks: [4], exitSets: [[1, 3]], copycat: [1] }).map(
      (x) => x.name,
    ),
    ['met', 'met:lambda=0.1', 'met:rank=4', 'met:exits=1,3', 'met:distill=1'],
  );
  // The default set is the paper's six.
  assert.deepEqual(
    studyVariants({}).map((x) => x.name),
    ['met', 'no_gr', 'shared_cls', 'linear_probe', 'mha_only', 'mlp_only'],
  );
});

test('met ablate: the study folder, its table, and the table equals met eval --json of each run', async () => {
  const t = await tinyRun();
  const study = path.join(t.root, 'study-a');
  const ablate = [
    'ablate',
    ...(await base()),
    '--variants',
    'met,no_gr,linear_probe,met:lambda=0.1',
    '--out',
    study,
    '--json',
  ];
  const r = met(ablate);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as StudyJson;
  assert.equal(j.study, study);
  assert.deepEqual(
    j.runs.map((x) => x.variant),
    ['met', 'no_gr', 'linear_probe', 'met:lambda=0.1'],
  );
  for (const f of ['study.json', 'comparison.json', 'comparison.csv', 'comparison.txt'])
    assert.ok(fs.existsSync(path.join(study, f)), f);
  const s = readStudy(study)!;
  assert.equal(s.variants.length, 4);
  assert.equal(s.base.seed, 0);
  // Every run shares the data, split and seed; only the variant's own settings differ.
  assert.deepEqual(j.settingsDiff.map((d) => d.key).sort(), ['lambda', 'variant']);
  assert.deepEqual(j.settingsDiff.find((d) => d.key === 'lambda')!.values, {
    met: TRAIN_DEFAULTS.lambda,
    no_gr: TRAIN_DEFAULTS.lambda,
    linear_probe: TRAIN_DEFAULTS.lambda,
    'met:lambda=0.1': 0.1,
  });
  const col = (k: string) => j.table.columns.findIndex((c) => c.key === k);
  for (const [i, run] of j.runs.entries()) {
    assert.equal(run.run, path.join(study, s.variants[i].run));
    const e = met(['eval', '--run', run.run, '--json']);
    assert.equal(e.code, 0, e.err);
    const ev = JSON.parse(e.out) as EvalJson;
    assert.deepEqual(
      run.exits.map((x) => [x.layer, x.accuracy, x.gflops]),
      ev.exits.map((x) => [x.layer, x.accuracy, x.gflops]),
    );
    assert.deepEqual(
      run.dynamic.map((d) => [d.p, d.accuracy, d.gflops]),
      ev.dynamic.map((d) => [d.p, d.accuracy, d.gflops]),
    );
    // The table's row is the same numbers.
    const row = j.table.rows[i];
    assert.equal(row.name, run.variant);
    ev.exits.forEach((x, k) => assert.equal(row.values[col(`exit${k + 1}`)], x.accuracy));
    const mean = ev.exits.reduce((a, x) => a + x.accuracy, 0) / ev.exits.length;
    assert.ok(Math.abs(row.values[col('mean')]! - mean) < 1e-12);
  }
  // A linear probe trains only the heads: fewer parameters than MET, marked best in that column.
  const params = col('trainable');
  assert.ok(j.runs[2].trainable < j.runs[0].trainable);
  assert.deepEqual(j.table.best[params], [2]);
  assert.equal(j.runs[0].trainable, j.runs[1].trainable);
  const csv = fs.readFileSync(path.join(study, 'comparison.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 5);
  assert.match(csv[0], /^run,variant,run_folder,L1 accuracy,/);
  const txt = fs.readFileSync(path.join(study, 'comparison.txt'), 'utf8');
  assert.match(txt, /^test accuracy % per exit/);
  assert.match(txt, /met:lambda=0\.1/);

  // The same command again trains nothing and prints the same table.
  const again = met(ablate);
  assert.equal(again.code, 0, again.err);
  assert.equal((again.err.match(/finished earlier, kept/g) ?? []).length, 4, again.err);
  assert.deepEqual((JSON.parse(again.out) as StudyJson).table, j.table);

  // Other shared settings in the same folder are refused, naming what differs.
  const other = met(['ablate', ...(await base()), '--seed', '3', '--variants', 'met', '--out', study]);
  assert.equal(other.code, 1);
  assert.match(other.err, /holds a study made with other settings \(seed: 0 there, 3 here\)/);
});

test('met ablate killed in the middle: the same command finishes only what is missing', async () => {
  const t = await tinyRun();
  const study = path.join(t.root, 'study-kill');
  const args = [
    MET,
    'ablate',
    ...(await base()),
    '--epochs',
    '40',
    '--variants',
    'no_gr,met,linear_probe',
    '--out',
    study,
    '--progress',
    'json',
  ];
  // Killed (SIGKILL: no checkpoint on the way out) once the second run has a checkpoint.
  await new Promise<void>((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let err = '';
    let killed = false;
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const e = JSON.parse(line) as { type: string; variant: string; event?: { type: string; epoch: number } };
        if (!killed && e.type === 'event' && e.variant === 'met' && e.event?.type === 'epoch' && e.event.epoch >= 2) {
          killed = true;
          p.kill('SIGKILL');
        }
      }
    });
    p.on('exit', () => (killed ? resolve() : reject(new Error(`ablate ended before it was killed:\n${err}`))));
  });
  const first = path.join(study, 'no_gr');
  const firstTrained = fs.statSync(path.join(first, 'trainable.safetensors')).mtimeMs;
  assert.ok(!fs.existsSync(path.join(study, 'linear_probe')), 'the third run had not started');

  const r = met(args.slice(1));
  assert.equal(r.code, 0, r.err);
  const states = r.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; variant: string; state?: string })
    .filter((e) => e.type === 'run' && e.state !== 'finished')
    .map((e) => `${e.variant}:${e.state}`);
  assert.deepEqual(states, ['no_gr:done', 'met:resumable', 'linear_probe:new']);
  // The finished run was not trained again.
  assert.equal(fs.statSync(path.join(first, 'trainable.safetensors')).mtimeMs, firstTrained);
  for (const v of ['no_gr', 'met', 'linear_probe']) {
    const st = JSON.parse(fs.readFileSync(path.join(study, v, 'status.json'), 'utf8')) as { phase: string };
    assert.equal(st.phase, 'done', v);
  }
  // The resumed run trained all its epochs once: one epoch line per epoch.
  const epochs = fs
    .readFileSync(path.join(study, 'met', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; epoch: number })
    .filter((e) => e.type === 'epoch')
    .map((e) => e.epoch);
  assert.deepEqual(
    epochs,
    Array.from({ length: 40 }, (_, i) => i + 1),
  );
  assert.ok(fs.existsSync(path.join(study, 'comparison.csv')));
  // The JSON progress ends with the result (what --json prints).
  const last = JSON.parse(r.out.trim().split('\n').pop()!) as StudyJson & { type: string };
  assert.equal(last.type, 'result');
  assert.deepEqual(
    last.runs.map((x) => x.variant),
    ['no_gr', 'met', 'linear_probe'],
  );
});
