// The engine process seen from a real VS Code extension host: fine-tuning the generated shapes
// folder with the bundled tiny ViT through the met.fineTune command (no UI: confirm false),
// cancelling a run and completing it with `met train --resume`, killing the engine process
// (reported, and the next fine-tune works), and the extension host's event-loop delay while the
// engine trains. Everything goes through the extension's exported API and its commands: the
// same module instances the extension runs (see index.ts).
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as vscode from 'vscode';
import type { MetApi } from '../../../src/extension';
import type { FineTuneResult } from '../../../src/extension/commands';
import type { TrainingState, TrainingUpdate } from '../../../src/extension/trainingEvents';

const EXTENSION_ID = 'met-tools.met-vscode';
const DATA = process.env.MET_TEST_DATA;
const BACKBONE = process.env.MET_TEST_BACKBONE;
/** Settings that keep a run short on a shared 2-core machine; one thread leaves the other core to the host. */
const QUICK = { batch: 8, threads: 1, lr: 0.005, warmupEpochs: 0 };

let api: MetApi;

async function metApi(): Promise<MetApi> {
  const ext = vscode.extensions.getExtension<MetApi>(EXTENSION_ID);
  assert.ok(ext, `${EXTENSION_ID} is not installed in this host`);
  return ext.activate();
}

/** Resolves with the first training state matching `pred` (of any run). */
function nextState(pred: (s: TrainingState) => boolean, timeoutMs = 120_000): Promise<TrainingState> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      sub.dispose();
      reject(new Error(`no matching training state within ${timeoutMs} ms`));
    }, timeoutMs);
    const sub = api.onDidChangeTrainingState((s) => {
      if (!pred(s)) return;
      clearTimeout(t);
      sub.dispose();
      resolve(s);
    });
  });
}

/** Resolves at the n-th step event of runDir. */
function nthStep(runDir: string, n: number, timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const t = setTimeout(() => {
      sub.dispose();
      reject(new Error(`${runDir}: fewer than ${n} steps within ${timeoutMs} ms (saw ${seen})`));
    }, timeoutMs);
    const sub = api.onDidTrainingUpdate((u) => {
      if (path.resolve(u.runDir) !== path.resolve(runDir) || u.event.type !== 'step' || ++seen < n) return;
      clearTimeout(t);
      sub.dispose();
      resolve();
    });
  });
}

function metrics(runDir: string): { type: string; step: number }[] {
  return fs
    .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { type: string; step: number });
}

/** Polls until pred() holds (things the extension does right after a state change, e.g. its messages). */
async function eventually(pred: () => boolean, what: () => string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`not within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A line in the launcher's output (only lines with the marker are printed, see index.ts). */
function report(line: string): void {
  console.log(`${process.env.MET_TEST_OUTPUT_MARKER ?? ''}${line}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

suite('engine process', function () {
  suiteSetup(async function () {
    if (!DATA || !BACKBONE) {
      // The launchers (run-suite.mjs, electron.mjs) always set these; a bare host cannot run this suite.
      throw new Error('MET_TEST_DATA / MET_TEST_BACKBONE are not set (run through npm run test:vscode)');
    }
    api = await metApi();
  });

  test('the MET commands are contributed and registered', async () => {
    const mine = ['met.fineTune', 'met.cancelTraining', 'met.openRun', 'met.createConfig', 'met.checkGpu'];
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as {
      contributes: { commands: { command: string }[] };
      capabilities: { untrustedWorkspaces: { supported: string } };
    };
    const contributed = new Set(pkg.contributes.commands.map((c) => c.command));
    const registered = new Set(await vscode.commands.getCommands(true));
    for (const c of mine) {
      assert.ok(contributed.has(c), `${c} is not in package.json`);
      assert.ok(registered.has(c), `${c} is not registered`);
    }
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, 'limited');
  });

  test('fine-tuning the generated folder completes and writes a run; the host stays responsive', async function () {
    this.timeout(240_000);
    // Of every run: a training of an earlier test may report its end after this one subscribed.
    const states: { runDir: string; status: string }[] = [];
    const updates: TrainingUpdate[] = [];
    let statusDuringTraining = '';
    const subs = [
      api.onDidChangeTrainingState((s) => states.push({ runDir: path.resolve(s.runDir), status: s.status })),
      api.onDidTrainingUpdate((u) => {
        updates.push(u);
        if (u.event.type === 'epoch') statusDuringTraining = api.statusBarText();
      }),
    ];
    // Event-loop delay of this extension host while the engine (another process) trains, and
    // for comparison over 3 s before it starts: on a loaded machine both grow, and the
    // difference is what training costs the host.
    const idle = monitorEventLoopDelay({ resolution: 5 });
    idle.enable();
    await new Promise((r) => setTimeout(r, 3000));
    idle.disable();
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const t0 = Date.now();
    let r: FineTuneResult | undefined;
    try {
      r = await vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', {
        folder: DATA,
        weights: BACKBONE,
        overrides: { ...QUICK, epochs: 8 },
        confirm: false,
      });
    } finally {
      h.disable();
      subs.forEach((d) => d.dispose());
    }
    const ms = (ns: number) => (ns / 1e6).toFixed(1);
    const seconds = (Date.now() - t0) / 1000;
    report(
      `    event-loop delay of the extension host during ${seconds.toFixed(1)} s of fine-tuning: ` +
        `p50 ${ms(h.percentile(50))} ms, p99 ${ms(h.percentile(99))} ms, max ${ms(h.max)} ms (5 ms sampling timer included; ${updates.length} engine events); ` +
        `idle before: p99 ${ms(idle.percentile(99))} ms, max ${ms(idle.max)} ms`,
    );
    // Kept as a CI artifact next to the UI test's screenshots.
    const artifacts = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'test-artifacts');
    fs.mkdirSync(artifacts, { recursive: true });
    fs.writeFileSync(
      path.join(artifacts, 'event-loop-delay.json'),
      JSON.stringify(
        {
          seconds,
          events: updates.length,
          p50Ms: h.percentile(50) / 1e6,
          p99Ms: h.percentile(99) / 1e6,
          maxMs: h.max / 1e6,
          idleP99Ms: idle.percentile(99) / 1e6,
          idleMaxMs: idle.max / 1e6,
          timerIntervalMs: 5,
        },
        null,
        1,
      ),
    );
    assert.ok(r, 'met.fineTune returned nothing');
    assert.equal(r.status, 'done', r.error);
    const runDir = r.runDir;
    assert.ok(runDir.startsWith(path.join(process.env.MET_TEST_WORKSPACE!, '.met', 'runs')), runDir);
    for (const f of [
      'config.json',
      'report.json',
      'metrics.jsonl',
      'checkpoint.safetensors',
      'trainable.safetensors',
      'predictions.json',
      'thresholds.json',
      'summary.json',
    ]) {
      assert.ok(fs.existsSync(path.join(runDir, f)), `${f} missing in ${runDir}`);
    }
    const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as {
      exits: { accuracy: number }[];
    };
    assert.equal(summary.exits.length, 6, 'the tiny ViT has an exit after each of its 6 layers');
    assert.deepEqual(
      r.accuracy,
      summary.exits.map((e) => e.accuracy),
    );
    // Live updates: every step the engine logged in metrics.jsonl also reached the host.
    const steps = updates.filter((u) => u.runDir === runDir && u.event.type === 'step').length;
    assert.equal(steps, metrics(runDir).filter((m) => m.type === 'step').length);
    assert.ok(steps > 0);
    assert.deepEqual(
      states.filter((s) => s.runDir === path.resolve(r!.runDir)).map((s) => s.status),
      ['starting', 'running', 'done'],
    );
    assert.match(statusDuringTraining, /MET epoch \d\/8 · \d+% · ETA/);
    assert.equal(api.statusBarText(), '', 'the status bar item is hidden after the run');
    assert.equal(api.lastRunDir(), runDir);
    await eventually(
      () => api.messages().some((m) => m.level === 'info' && m.text.includes(`${path.basename(runDir)} finished`)),
      () => JSON.stringify(api.messages().slice(-3)),
    );
    // The goal is under 50 ms; the assertion leaves room for a loaded shared CI machine.
    assert.ok(
      h.percentile(99) / 1e6 < Number(process.env.MET_MAX_LOOP_P99_MS ?? 200),
      `event-loop delay p99 ${ms(h.percentile(99))} ms`,
    );
  });

  test('cancelling leaves a run that `met train --resume` completes', async function () {
    this.timeout(240_000);
    const started = await vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', {
      folder: DATA,
      weights: BACKBONE,
      overrides: { ...QUICK, epochs: 4 },
      confirm: false,
      wait: false,
    });
    assert.ok(started && started.status === 'started', JSON.stringify(started));
    const runDir = started.runDir;
    const stopped = nextState((s) => s.runDir === runDir && s.status !== 'starting' && s.status !== 'running');
    await nthStep(runDir, 2);
    const cancelled = await vscode.commands.executeCommand<string[]>('met.cancelTraining');
    assert.deepEqual(cancelled, [runDir]);
    const s = await stopped;
    assert.equal(s.status, 'stopped', s.error);
    assert.ok(fs.existsSync(path.join(runDir, 'checkpoint.safetensors')), 'no checkpoint after cancel');
    assert.ok(!fs.existsSync(path.join(runDir, 'summary.json')), 'a cancelled run has no summary');
    const before = metrics(runDir).filter((m) => m.type === 'step');
    const start = s.last.start as { totalSteps: number } | undefined;
    assert.ok(
      start && before.length < start.totalSteps,
      `cancelled after ${before.length} of ${start?.totalSteps} steps`,
    );
    await eventually(
      () => api.messages().some((m) => m.text.includes(`${path.basename(runDir)} stopped`)),
      () => JSON.stringify(api.messages().slice(-3)),
    );

    // The CLI, as a user would run it in a terminal (off the host thread: execFile is async).
    const cli = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
    const out = await new Promise<{ code: number; err: string }>((resolve) =>
      execFile(
        process.execPath,
        [cli, 'train', '--resume', runDir, '--threads', '1'],
        { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' }, timeout: 180_000 },
        (e, _o, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, err }),
      ),
    );
    assert.equal(out.code, 0, out.err);
    assert.ok(fs.existsSync(path.join(runDir, 'summary.json')), 'the resumed run has no summary.json');
    const steps = metrics(runDir)
      .filter((m) => m.type === 'step')
      .map((m) => m.step);
    assert.deepEqual(
      steps,
      Array.from({ length: start.totalSteps }, (_, i) => i + 1),
      'steps of the cancelled + resumed run are 1..total, each once',
    );
  });

  test('killing the engine process is reported, and the next fine-tune works', async function () {
    this.timeout(240_000);
    const started = await vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', {
      folder: DATA,
      weights: BACKBONE,
      overrides: { ...QUICK, epochs: 30 },
      confirm: false,
      wait: false,
    });
    assert.ok(started?.pid, JSON.stringify(started));
    const runDir = started.runDir;
    const ended = nextState((s) => s.runDir === runDir && s.status !== 'starting' && s.status !== 'running');
    await nthStep(runDir, 1);
    const pid = api.trainingPid();
    assert.equal(pid, started.pid);
    process.kill(pid!, 'SIGKILL');
    const s = await ended;
    // Killed right after its first step (the window sees steps within a poll, so the first
    // epoch's checkpoint may already be written): failed when no checkpoint is left, else
    // stopped, with Resume. Either way the message names the process and what happened.
    const resumable = fs.existsSync(path.join(runDir, 'checkpoint.safetensors'));
    const name = path.basename(runDir);
    const why = resumable
      ? `the training process (pid ${pid}) ended without finishing (killed or crashed); its last checkpoint`
      : `the training process (pid ${pid}) ended before its first checkpoint (killed or crashed)`;
    assert.equal(s.status, resumable ? 'stopped' : 'failed');
    assert.ok(s.error?.startsWith(why), `${s.error} does not start with ${why}`);
    const shown = resumable ? `MET: ${name} stopped (${why}` : `fine-tuning ${name} failed: ${why}`;
    await eventually(
      () => api.messages().some((m) => m.level === (resumable ? 'info' : 'error') && m.text.includes(shown)),
      () => JSON.stringify(api.messages().slice(-3)),
    );
    assert.equal(api.trainingPid(), undefined, 'no training is left active');
    assert.equal(api.statusBarText(), '');

    // The utility engine (resolve, GPU check) dies too: the next use starts a new one.
    const utility = api.engines.pids().utility;
    assert.ok(utility && isAlive(utility));
    process.kill(utility, 'SIGKILL');
    const gpu = await vscode.commands.executeCommand<
      { statuses: { provider: string; available: boolean }[]; auto: string } | undefined
    >('met.checkGpu');
    assert.ok(
      gpu,
      `met.checkGpu failed after the utility engine was killed: ${JSON.stringify(api.messages().slice(-2))}`,
    );
    assert.equal(gpu.statuses.find((x) => x.provider === 'cpu')?.available, true);
    assert.notEqual(api.engines.pids().utility, utility);

    const r = await vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', {
      folder: DATA,
      weights: BACKBONE,
      overrides: { ...QUICK, epochs: 1 },
      confirm: false,
    });
    assert.equal(r?.status, 'done', r?.error);
    assert.notEqual(r.runDir, runDir);
    assert.ok(fs.existsSync(path.join(r.runDir, 'summary.json')));
  });

  test('Create config writes a commented met.config.json that the engine accepts', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(process.env.MET_TEST_WORKSPACE!, 'cfg-'));
    fs.symlinkSync(DATA!, path.join(dir, 'images'));
    fs.copyFileSync(BACKBONE!, path.join(dir, 'tiny.safetensors'));
    const file = await vscode.commands.executeCommand<string | undefined>('met.createConfig', vscode.Uri.file(dir), {
      open: false,
    });
    assert.equal(file, path.join(dir, 'met.config.json'));
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^\s*\/\/ /m);
    assert.match(text, /"data": "images"/);
    assert.match(text, /"weights": "tiny.safetensors"/);
    assert.match(text, /"rank": 8,/);
    // The engine reads it like `met train --config` (heads given: 64 is not a standard width).
    const p = await api.engines.request('train/resolve', {
      configFile: file,
      overrides: { heads: 4 },
      workspaceRoot: dir,
    });
    assert.equal(p.config.rank, 8);
    assert.equal(p.config.data, path.join(dir, 'images'));
    assert.equal(p.classes.length, fs.readdirSync(DATA!).filter((d) => !d.startsWith('.')).length);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
