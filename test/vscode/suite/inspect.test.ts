// Inspect exits in the real extension host, on a run this suite trains on the generated folder:
//   - the per-exit accuracy the panel shows equals `met eval --run RUN --json`;
//   - every slider position gives the accuracy, mean GFLOPs and exit counts the engine computes
//     for those thresholds (applyThresholds on the run's stored test predictions, and the curve
//     point thresholds.json records);
//   - "Save thresholds" writes thresholds.json `chosen`, and `met predict --run` then takes the
//     exits those thresholds give;
//   - the keyboard moves through the grid and Enter shows the per-layer bars (top-3 from the engine);
//   - hidden and shown again, the webview comes back with its slider point and selection;
//   - Explain on a selected image: the attention maps the webview received (both modes, every exit)
//     equal what the engine module (src/engine/explore/attention.ts) computes for that image here;
//   - Embeddings: the points drawn at every exit are the engine's 'embeddings/compute' for the run,
//     the selected image highlighted (placed on the sample's axes when it is not in the sample), and
//     the arrow keys move between points with a readout naming the file and class;
//   - a 5,000-image folder opens (time to first paint) and scrolls without the webview freezing.
//
// What the webview shows comes back through the hidden command met.inspect.snapshot (what the
// webview itself posted after rendering); met.inspect.test drives it through the same code paths
// as a user's input (the slider's input event, keydown on the grid, the Save button's click).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { applyThresholds } from '../../../src/engine/infer/thresholds';
import { AttentionModel } from '../../../src/engine/explore/attention';
import { loadBatch } from '../../../src/engine/data/image';
import { loadRun, preprocessOf } from '../../../src/engine/run/run';
import { activate, extension, met, trainWithCli, type TinyRun, waitFor, workspaceDir, writeConfig } from '../fixtures';
import type { RenderedSnapshot } from '../../../webview-ui/inspect/protocol';
import type { EmbeddingsResult } from '../../../src/engine/explore/types';

type Rendered = RenderedSnapshot;
interface Snapshot {
  runDir: string;
  source: { kind: string; paths: string[] };
  visible: boolean;
  readyCount: number;
  firstPaintMs?: number;
  webviewFirstPaintMs?: number;
  allScoredMs?: number;
  thumbsDir?: string;
  state?: { point?: number; selected?: number; active?: number; col?: number; scrollTop?: number };
  rendered?: Rendered;
  perf?: {
    firstPaintMs?: number;
    scroll?: {
      ms: number;
      frames: number;
      worstFrameMs: number;
      worstLagMs: number;
      meanFrameMs: number;
      rowsMoved: number;
      finalTop: number;
      worstRenderMs: number;
      longTasks: number;
      worstLongTaskMs: number;
    };
  };
}
interface Split {
  files: string[];
  labels: number[];
  conf: number[][];
  pred: number[][];
}
interface Thresholds {
  exits: number[];
  gflops: number[];
  curve: { p: number; thresholds: (number | null)[]; accuracy: number; gflops: number; exitCounts: number[] }[];
  chosen: { p: number | null; thresholds: (number | string | null)[]; source: string };
}
interface Prediction {
  file: string;
  exits: { exit: number; confidence: number; class: number; label: string }[];
  exit: number;
}

const snapshots = () => vscode.commands.executeCommand<Snapshot[]>('met.inspect.snapshot');
const snapshotOf = async (dir: string, kind = 'test') =>
  (await snapshots()).find((s) => s.runDir === dir && s.source.kind === kind);
const act = (action: unknown, dir: string, kind?: 'test' | 'paths') =>
  vscode.commands.executeCommand<boolean>('met.inspect.test', action, dir, kind);
const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
/** As thresholds.json holds them (null: +Infinity, or anything at the last used exit) and the snapshot (strings). */
const decode = (v: number | string | null, last: boolean) =>
  last ? -Infinity : typeof v === 'number' ? v : v === '-Infinity' ? -Infinity : Infinity;
const readJson = <T>(f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as T;

suite('Inspect exits', () => {
  let run: TinyRun;
  let split: Split;

  suiteSetup(async function () {
    this.timeout(300_000);
    await activate();
    // A run of its own (this suite saves thresholds into it): half the images for val and test,
    // so the budget curve has several distinct points; a few epochs, so the exits disagree.
    run = await trainWithCli(
      writeConfig(`inspect-${Date.now()}`, 'met.config.json', { epochs: 4, split: [50, 25, 25], lr: 0.005 }),
    );
    split = readJson<{ test: Split }>(path.join(run.runDir, 'predictions.json')).test;
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("opens on the run's test split; the per-exit accuracy shown equals met eval --json", async function () {
    this.timeout(180_000);
    const ev = await met(['eval', '--run', run.runDir, '--json'], workspaceDir());
    assert.equal(ev.code, 0, ev.stderr);
    const evaluated = JSON.parse(ev.stdout) as { exits: { exit: number; accuracy: number }[] };
    // met eval rewrote predictions.json from a fresh scoring; the panel reads that file.
    split = readJson<{ test: Split }>(path.join(run.runDir, 'predictions.json')).test;
    const opened = await vscode.commands.executeCommand<string>('met.inspectExits', run.runDir);
    assert.equal(opened, run.runDir);
    const snap = await waitFor(
      'the panel to render the test split',
      async () => {
        const s = await snapshotOf(run.runDir);
        return s?.rendered && s.rendered.n > 0 && s.rendered.scored === s.rendered.n ? s : undefined;
      },
      60_000,
    );
    const r = snap.rendered!;
    assert.equal(r.n, split.files.length, 'one row per test image of predictions.json');
    assert.deepEqual(
      r.exitAccuracy,
      evaluated.exits.map((e) => e.accuracy),
      'per-exit accuracy = met eval --json',
    );
    assert.deepEqual(
      r.exitAccuracyText,
      evaluated.exits.map((e) => pct(e.accuracy)),
    );
    // Every row on screen marks exactly one exit as taken; the grid holds at most a screenful of rows.
    assert.ok(r.domRows > 0 && r.domRows <= r.n);
    assert.equal(r.markedCells, r.domRows, 'one exit marked per row');
    assert.equal(r.slider.saved, true, 'the slider starts on the saved thresholds');
    assert.equal(
      r.classes.reduce((a, c) => a + c.n, 0),
      r.n,
      'the per-class summary covers every image',
    );
    assert.equal(typeof snap.firstPaintMs, 'number', 'time to first paint measured');
  });

  test("a webview's pickRun of a folder the host never listed is ignored; the panel stays on its run", async function () {
    this.timeout(120_000);
    const opened = await vscode.commands.executeCommand<string>('met.inspectExits', run.runDir);
    assert.equal(opened, run.runDir);
    await waitFor('the panel to render', async () => (await snapshotOf(run.runDir))?.rendered, 60_000);
    const other = path.dirname(run.runDir);
    for (const dir of ['/', other, path.join(run.runDir, '..', '..')]) {
      assert.equal(
        await vscode.commands.executeCommand('met.inspect.receive', run.runDir, { type: 'pickRun', dir }),
        true,
      );
      const all = await snapshots();
      assert.ok(
        all.every((s) => s.runDir !== path.resolve(dir)),
        `the panel was retargeted to ${dir}`,
      );
      assert.ok(await snapshotOf(run.runDir), 'the panel still shows its run');
    }
  });

  test('every slider point gives the accuracy and GFLOPs the engine computes for its thresholds', async function () {
    this.timeout(120_000);
    const th = readJson<Thresholds>(path.join(run.runDir, 'thresholds.json'));
    const M = th.exits.length;
    const cost = th.exits.map((j) => th.gflops[j]);
    const scores = {
      conf: th.exits.map((j) => Float32Array.from(split.conf[j])),
      pred: th.exits.map((j) => Int32Array.from(split.pred[j])),
      labels: Int32Array.from(split.labels),
    };
    const count = (await snapshotOf(run.runDir))!.rendered!.slider.count;
    assert.ok(count >= 2, `the curve has several distinct points (${count})`);
    const seen = new Set<string>();
    for (let i = count - 1; i >= 0; i--) {
      assert.ok(await act({ kind: 'slider', index: i }, run.runDir));
      const s = (
        await waitFor(`slider point ${i}`, async () => {
          const x = await snapshotOf(run.runDir);
          return x?.rendered?.slider.index === i ? x : undefined;
        })
      ).rendered!.slider;
      const T = s.thresholds.map((v, u) => decode(v, u === M - 1));
      const expected = applyThresholds(scores, T, cost);
      assert.equal(s.accuracy, expected.accuracy, `accuracy at point ${i}`);
      assert.ok(
        Math.abs(s.gflops! - expected.gflops) <= 1e-12 * expected.gflops,
        `GFLOPs at point ${i}: ${s.gflops} vs ${expected.gflops}`,
      );
      assert.deepEqual(s.exitCounts, expected.exitCounts, `exit counts at point ${i}`);
      // And it is the curve point the engine wrote into thresholds.json (fitted on val, evaluated on test).
      const pt = th.curve.find((c) => c.p === s.p && c.thresholds.every((v, u) => decode(v, u === M - 1) === T[u]));
      if (s.p !== null) {
        assert.ok(pt, `point ${i} (p ${s.p}) is a point of thresholds.json's curve`);
        assert.equal(s.accuracy, pt!.accuracy);
        assert.ok(Math.abs(s.gflops! - pt!.gflops) <= 1e-12 * pt!.gflops);
        assert.deepEqual(s.exitCounts, pt!.exitCounts);
      }
      assert.equal(s.accuracyText, `${(100 * expected.accuracy).toFixed(2)}%`);
      seen.add(T.join(','));
    }
    assert.equal(seen.size, count, 'each slider point has its own thresholds');
  });

  test('Save thresholds writes them to the run; met predict then takes the exits they give', async function () {
    this.timeout(240_000);
    const th = readJson<Thresholds>(path.join(run.runDir, 'thresholds.json'));
    const M = th.exits.length;
    const predict = async () => {
      const r = await met(['predict', '--run', run.runDir, '--json', ...split.files], workspaceDir());
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Prediction[];
    };
    const before = await predict();
    // The point whose exit distribution differs most from the saved one's.
    const count = (await snapshotOf(run.runDir))!.rendered!.slider.count;
    const byPoint: Rendered['slider'][] = [];
    for (let i = 0; i < count; i++) {
      await act({ kind: 'slider', index: i }, run.runDir);
      byPoint.push(
        (
          await waitFor(`slider point ${i}`, async () => {
            const x = await snapshotOf(run.runDir);
            return x?.rendered?.slider.index === i ? x : undefined;
          })
        ).rendered!.slider,
      );
    }
    const savedPoint = byPoint.find((b) => b.saved);
    assert.ok(savedPoint, 'the saved thresholds are a slider point');
    let best = -1;
    let bestDist = 0;
    byPoint.forEach((b, i) => {
      const d = b.exitCounts.reduce((a, c, u) => a + Math.abs(c - savedPoint.exitCounts[u]), 0);
      if (d > bestDist) ((bestDist = d), (best = i));
    });
    assert.ok(
      best >= 0,
      `some slider point sends images to other exits than the saved thresholds (${JSON.stringify(byPoint.map((b) => b.exitCounts))})`,
    );
    await act({ kind: 'slider', index: best }, run.runDir);
    await waitFor(
      'the slider at the chosen point',
      async () => (await snapshotOf(run.runDir))?.rendered?.slider.index === best,
    );
    assert.ok(await act({ kind: 'save' }, run.runDir));
    const after = await waitFor('the panel to show the point as saved', async () => {
      const s = (await snapshotOf(run.runDir))?.rendered?.slider;
      return s && s.saved && s.index === best ? s : undefined;
    });
    const file = readJson<Thresholds>(path.join(run.runDir, 'thresholds.json'));
    const T = after.thresholds.map((v, u) => decode(v, u === M - 1));
    assert.deepEqual(
      file.chosen.thresholds.map((v, u) => decode(v, u === M - 1)),
      T,
      'thresholds.json chosen = the slider point',
    );
    assert.equal(file.chosen.p, after.p);
    assert.match(file.chosen.source, /slider/);
    assert.deepEqual(file.curve, th.curve, 'the curve is left as it was');

    const now = await predict();
    // met predict runs budgeted inference with the saved thresholds: the exit it reports is the
    // first used exit whose confidence (its own, printed) reaches the threshold.
    for (const r of now) {
      let u = 0;
      while (u < M - 1 && !(r.exits[th.exits[u]].confidence >= T[u])) u++;
      assert.equal(r.exit, th.exits[u] + 1, `${r.file}: exit taken under the saved thresholds`);
    }
    const counts = th.exits.map((j) => now.filter((r) => r.exit === j + 1).length);
    assert.deepEqual(counts, after.exitCounts, 'met predict sends as many images to each exit as the panel shows');
    assert.notDeepEqual(
      now.map((r) => r.exit),
      before.map((r) => r.exit),
      'the saved thresholds changed the exits met predict reports',
    );
  });

  test('keyboard: arrows move the active cell, Enter selects and shows per-layer bars with top-3 classes', async function () {
    this.timeout(60_000);
    for (const key of ['Home', 'ArrowDown', 'ArrowRight', 'ArrowRight', 'ArrowLeft', 'Enter'])
      await act({ kind: 'key', key }, run.runDir);
    const s = await waitFor(
      'the selected image with top-3 bars',
      async () => {
        const x = await snapshotOf(run.runDir);
        const sel = x?.rendered?.selected;
        return sel && sel.index === 1 && sel.bars.every((b) => b.top.length > 0) ? x : undefined;
      },
      30_000,
    );
    const r = s.rendered!;
    assert.equal(r.active, 1);
    assert.equal(r.col, 1);
    assert.equal(r.selected!.file, split.files[1]);
    assert.equal(r.selected!.bars.length, split.conf.length, 'one bar per exit');
    r.selected!.bars.forEach((b, j) => {
      assert.equal(b.top.length, 3, 'top-3 classes');
      // The engine's top-1 (scored now) is the stored prediction, with the stored confidence.
      assert.ok(
        Math.abs(b.top[0].prob - split.conf[j][1]) < 1e-5,
        `exit ${j + 1}: top-1 ${b.top[0].prob} vs stored ${split.conf[j][1]}`,
      );
      assert.ok(b.top[0].prob >= b.top[1].prob && b.top[1].prob >= b.top[2].prob, 'top-3 in order');
    });
  });

  test('hidden and shown again, the webview comes back with its slider point and selection', async function () {
    this.timeout(60_000);
    const before = (await snapshotOf(run.runDir))!;
    await vscode.window.showTextDocument(vscode.Uri.file(path.join(run.runDir, 'config.json')), { preview: false });
    await waitFor('the panel to be hidden', async () => (await snapshotOf(run.runDir))?.visible === false);
    await vscode.commands.executeCommand('met.inspectExits', run.runDir);
    const again = await waitFor(
      'a rebuilt webview',
      async () => {
        const s = await snapshotOf(run.runDir);
        return s &&
          s.readyCount > before.readyCount &&
          s.rendered &&
          s.rendered.selected?.bars.every((b) => b.top.length)
          ? s
          : undefined;
      },
      30_000,
    );
    assert.equal(again.rendered!.slider.index, before.rendered!.slider.index);
    assert.equal(again.rendered!.selected!.index, before.rendered!.selected!.index);
    assert.equal(again.state!.point, before.state!.point);
    assert.deepEqual(again.rendered!.exitAccuracy, before.rendered!.exitAccuracy);
  });

  test('Explain: the attention maps shown for an image are what the engine module computes for it', async function () {
    this.timeout(120_000);
    await vscode.commands.executeCommand('met.inspectExits', run.runDir);
    const row = 2;
    await act({ kind: 'select', row }, run.runDir);
    await act({ kind: 'explain', open: true, mode: 'last' }, run.runDir);
    const shown = await waitFor(
      'the attention maps of the selected image',
      async () => {
        const x = (await snapshotOf(run.runDir))?.rendered?.explain;
        if (x?.status === 'error') throw new Error(`Explain failed: ${x.error}`);
        return x && x.index === row && x.status === 'ready' && x.mode === 'last' ? x : undefined;
      },
      60_000,
    );
    // The engine module, run here on the same file with the run's own preprocessing.
    const { cf, vit, backbone, params } = loadRun(run.runDir);
    const img = await loadBatch([split.files[row]], preprocessOf(cf.train, vit));
    assert.deepEqual(img.failed, []);
    const model = await AttentionModel.create(vit, cf.met, backbone, params, { threads: 1 });
    const direct = await model.maps({
      dtype: 'float32',
      shape: [1, vit.channels, vit.imageSize, vit.imageSize],
      data: img.data,
    });
    await model.release();
    const G = vit.imageSize / vit.patchSize;
    assert.deepEqual(shown.grid, [G, G]);
    assert.deepEqual(
      shown.exits.map((e) => [e.exit, e.layer]),
      cf.met.exits.map((l, j) => [j, l]),
      'one map pair per exit, at its layer',
    );
    let worst = 0;
    shown.exits.forEach((e, j) => {
      for (const key of ['last', 'rollout'] as const) {
        assert.equal(e[key].length, G * G, `exit ${j + 1} ${key}: one value per patch`);
        e[key].forEach((v, k) => (worst = Math.max(worst, Math.abs(v - direct[j][key][k]))));
      }
    });
    assert.ok(worst <= 1e-6, `the maps shown differ from the engine module's by ${worst}`);
    // The toggle: the same maps, the rollout drawn (the snapshot says which one is on screen).
    await act({ kind: 'explain', mode: 'rollout' }, run.runDir);
    await waitFor('the rollout maps', async () => {
      const x = (await snapshotOf(run.runDir))?.rendered?.explain;
      return x?.mode === 'rollout' && x.status === 'ready' && x.index === row;
    });
    await act({ kind: 'explain', open: false, mode: 'last' }, run.runDir);
    await waitFor('Explain closed', async () => (await snapshotOf(run.runDir))?.rendered?.explain.open === false);
  });

  test('Embeddings: the points drawn are the engine’s, with the selected image highlighted or placed on the axes', async function () {
    this.timeout(240_000);
    const api = (await activate()).exports as { engines: { request(m: string, p: unknown): Promise<unknown> } };
    await vscode.commands.executeCommand('met.inspectExits', run.runDir);
    const row = 1;
    await act({ kind: 'select', row }, run.runDir);
    await act({ kind: 'embeddings', open: true }, run.runDir);
    const ready = async (kind: 'test' | 'paths', file: string) =>
      waitFor(
        `the embeddings with ${path.basename(file)} highlighted`,
        async () => {
          const x = (await snapshotOf(run.runDir, kind))?.rendered?.embeddings;
          if (x?.status === 'error') throw new Error(`Embeddings failed: ${x.error}`);
          return x && x.status === 'ready' && x.view?.highlight?.file === file ? x : undefined;
        },
        120_000,
      );
    const shown = await ready('test', split.files[row]);
    const eng = (await api.engines.request('embeddings/compute', { runDir: run.runDir })) as EmbeddingsResult;
    assert.equal(shown.split, 'test');
    assert.equal(eng.split, 'test');
    /** What the view drew (read back from the SVG) against the engine's coordinates. */
    const same = (v: NonNullable<typeof shown.view>, e: EmbeddingsResult, what: string) => {
      assert.deepEqual(
        v.files,
        [...e.sample, ...e.extra].map((x) => x.file),
        `${what}: the points, in order`,
      );
      assert.equal(v.exits.length, e.exits.length, `${what}: one plot per exit`);
      v.exits.forEach((d, j) => {
        const x = e.exits[j];
        assert.deepEqual([d.exit, d.layer], [x.exit, x.layer]);
        assert.equal(d.points, v.files.length, `${what}, exit ${j + 1}: every point drawn`);
        assert.deepEqual(d.axes, [
          `PC1 (${(100 * x.explained[0]).toFixed(1)}%)`,
          `PC2 (${(100 * x.explained[1]).toFixed(1)}%)`,
        ]);
        const want = [...x.coords, ...x.extraCoords];
        d.drawn.forEach((u, k) =>
          assert.ok(
            Math.abs(u - want[k]) <= 2e-3 * d.halfRange,
            `${what}, exit ${j + 1}: coordinate ${k} drawn at ${u}, the engine has ${want[k]}`,
          ),
        );
      });
    };
    same(shown.view!, eng, 'test split');
    // 3 test images per class here, all in a sample of up to 8 per class: the selected one is in it.
    assert.ok(eng.sample.some((x) => x.file === split.files[row]));
    assert.equal(shown.view!.highlight!.extra, false);
    const counts = eng.classes.map((_, k) => eng.sample.filter((x) => x.label === k).length);
    assert.ok(
      counts.every((c) => c === counts[0] && c > 0),
      `class-balanced: ${counts.join(', ')}`,
    );

    // Keyboard: Home goes to the first point; the readout names its file and class; Enter selects it.
    await act({ kind: 'embeddings', key: 'Home' }, run.runDir);
    const home = await waitFor('the first point under the keyboard', async () => {
      const v = (await snapshotOf(run.runDir))?.rendered?.embeddings.view;
      return v && v.active === 0 ? v : undefined;
    });
    assert.match(
      home.readout,
      new RegExp(
        `${path.basename(eng.sample[0].file).replace('.', '\\.')} · ${eng.classes[eng.sample[0].label]} · exit 1`,
      ),
    );
    await act({ kind: 'embeddings', key: 'ArrowRight' }, run.runDir);
    await act({ kind: 'embeddings', key: 'Enter' }, run.runDir);
    const picked = await waitFor('the picked point selected in the grid', async () => {
      const r = (await snapshotOf(run.runDir))?.rendered;
      const v = r?.embeddings.view;
      return r && v && v.active >= 0 && r.selected?.file === v.files[v.active] && v.highlight?.file === r.selected.file
        ? r
        : undefined;
    });
    assert.ok(picked.embeddings.view!.readout.includes('(selected)'));

    // An image that is not in the sample (a training image, from the explorer): placed on the
    // sample's axes, which stay where they were.
    const inSample = new Set(eng.sample.map((x) => x.file));
    const data = path.dirname(path.dirname(split.files[0])); // <data>/<class>/<image>
    const candidate = fs
      .readdirSync(data, { recursive: true, encoding: 'utf8' })
      .map((f) => path.join(data, f))
      .find((f) => f.endsWith('.png') && !inSample.has(f) && !split.files.includes(f));
    assert.ok(candidate && !inSample.has(candidate), 'an image outside the sample');
    await vscode.commands.executeCommand('met.inspectExits', { runDir: run.runDir, paths: [candidate] });
    await act({ kind: 'select', row: 0 }, run.runDir, 'paths');
    await act({ kind: 'embeddings', open: true }, run.runDir, 'paths');
    const placed = await ready('paths', candidate);
    const engX = (await api.engines.request('embeddings/compute', {
      runDir: run.runDir,
      files: [candidate],
    })) as EmbeddingsResult;
    assert.deepEqual(
      engX.extra.map((x) => x.file),
      [candidate],
    );
    assert.deepEqual(
      engX.exits.map((e) => e.coords),
      eng.exits.map((e) => e.coords),
      'the axes do not move',
    );
    same(placed.view!, engX, 'with an image placed');
    assert.deepEqual(placed.view!.highlight, { file: candidate, index: eng.sample.length, extra: true });
    assert.match(placed.note, /not in the sample/);
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  test('from the explorer: selected images are scored by the engine, as met predict --run scores them', async function () {
    this.timeout(120_000);
    const images = [split.files[0], split.files[split.files.length - 1]];
    const uris = images.map((f) => vscode.Uri.file(f));
    const r = await met(['predict', '--run', run.runDir, '--json', ...images], workspaceDir());
    assert.equal(r.code, 0, r.stderr);
    const predicted = JSON.parse(r.stdout) as Prediction[];
    // What the explorer context menu passes: the clicked resource, then every selected one. The
    // first selection goes out at once, before the panel has its images (the webview holds it).
    const opened = await vscode.commands.executeCommand<string>('met.inspectExits', uris[0], uris);
    assert.equal(opened, run.runDir, 'the newest finished run');
    for (let row = 0; row < images.length; row++) {
      await act({ kind: 'select', row }, run.runDir, 'paths');
      const s = await waitFor(
        `image ${row} scored and selected`,
        async () => {
          const x = (await snapshotOf(run.runDir, 'paths'))?.rendered;
          // applied: the exit marks follow the scores a data frame later.
          return x &&
            x.scored === images.length &&
            x.applied === images.length &&
            x.selected?.index === row &&
            x.selected.bars.every((b) => b.top.length)
            ? x
            : undefined;
        },
        60_000,
      );
      const sel = s.selected!;
      assert.equal(sel.file, images[row]);
      const p = predicted.find((x) => x.file === images[row])!;
      assert.deepEqual(
        sel.bars.map((b) => b.conf),
        p.exits.map((e) => e.confidence),
        'confidence per exit = met predict --run',
      );
      assert.deepEqual(
        sel.bars.map((b) => b.cls),
        p.exits.map((e) => e.label),
        'class per exit = met predict --run',
      );
      assert.equal(sel.exit, p.exit, 'the exit marked = the exit met predict takes under the saved thresholds');
    }
  });

  test('a 5,000-image folder opens and scrolls without the webview freezing', async function () {
    this.timeout(480_000);
    const cf = readJson<{ classes: string[] }>(path.join(run.runDir, 'config.json'));
    const folder = path.join(workspaceDir(), `inspect-5000-${Date.now()}`);
    const perClass = Math.ceil(5000 / cf.classes.length);
    const tGen = Date.now();
    await generateShapes(folder, cf.classes, perClass);
    const total = perClass * cf.classes.length;
    const genMs = Date.now() - tGen;
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');

    const opened = await vscode.commands.executeCommand<string>('met.inspectExits', {
      runDir: run.runDir,
      paths: [folder],
    });
    assert.equal(opened, run.runDir);
    const first = await waitFor(
      'the first paint of the big folder',
      async () => {
        const s = await snapshotOf(run.runDir, 'paths');
        return s?.firstPaintMs !== undefined && s.rendered && s.rendered.n === total ? s : undefined;
      },
      60_000,
    );
    const r0 = first.rendered!;
    assert.ok(r0.domRows > 0 && r0.domRows < 120, `virtualised: ${r0.domRows} row elements for ${r0.n} images`);
    // Thumbnails (engine, sharp) and scores (engine) arrive for the rows on screen first.
    const withThumbs = await waitFor(
      'thumbnails and scores of the rows on screen',
      async () => {
        const s = await snapshotOf(run.runDir, 'paths');
        return s?.rendered && s.rendered.thumbsShown >= Math.min(10, s.rendered.domRows) && s.rendered.scored >= 10
          ? s
          : undefined;
      },
      120_000,
    );
    const thumbs = fs.readdirSync(withThumbs.thumbsDir!).length;
    assert.ok(
      thumbs > 0 && thumbs < total,
      `thumbnails are made for the rows on screen, not for all ${total} (${thumbs})`,
    );

    // Scroll the whole list fast, measured in the webview, while the engine keeps scoring.
    assert.ok(await act({ kind: 'scroll', ms: 4000, rowsPerFrame: 9 }, run.runDir, 'paths'));
    const scrolled = await waitFor(
      'the scroll measurement',
      async () => (await snapshotOf(run.runDir, 'paths'))?.perf?.scroll,
      30_000,
    );
    const after = (await snapshotOf(run.runDir, 'paths'))!.rendered!;
    assert.ok(scrolled.frames >= 20, `frames drawn while scrolling: ${scrolled.frames}`);
    assert.ok(
      scrolled.worstFrameMs < 1000,
      `the webview froze for ${scrolled.worstFrameMs.toFixed(0)} ms while scrolling`,
    );
    // Our own work per frame (recycling rows; re-rendering when a chunk of scores arrives) stays small.
    assert.ok(scrolled.worstRenderMs < 250, `a render took ${scrolled.worstRenderMs.toFixed(0)} ms while scrolling`);
    assert.ok(after.domRows < 120, `still virtualised after scrolling (${after.domRows} row elements)`);
    // The keyboard reaches the end of the list, and the rows there render.
    await act({ kind: 'key', key: 'End' }, run.runDir, 'paths');
    const end = await waitFor('the last row', async () => {
      const s = (await snapshotOf(run.runDir, 'paths'))?.rendered;
      return s && s.active === total - 1 && s.lastRow === total - 1 ? s : undefined;
    });
    assert.ok(end.domRows < 120);

    // The engine scores every image in the background (the slider and summary need them all).
    const done = await waitFor(
      'every image scored',
      async () => {
        const s = await snapshotOf(run.runDir, 'paths');
        return s?.allScoredMs !== undefined && s.rendered?.scored === total ? s : undefined;
      },
      300_000,
      500,
    );
    const res = {
      images: total,
      generateMs: genMs,
      firstPaintMs: first.firstPaintMs,
      webviewFirstPaintMs: first.webviewFirstPaintMs,
      scroll: scrolled,
      allScoredMs: done.allScoredMs,
      thumbnailsMade: thumbs,
      domRows: after.domRows,
    };
    const artifacts = path.join(extension().extensionPath, 'test-artifacts');
    fs.mkdirSync(artifacts, { recursive: true });
    fs.writeFileSync(path.join(artifacts, 'inspect-5000.json'), `${JSON.stringify(res, null, 2)}\n`);
    // The numbers in the report line (console output of tests is not shown by run-suite.mjs).
    this.test!.title += ` [first paint ${first.firstPaintMs} ms, worst frame ${scrolled.worstFrameMs.toFixed(0)} ms, worst event-loop lag ${scrolled.worstLagMs.toFixed(0)} ms over ${scrolled.frames} frames, our worst render ${scrolled.worstRenderMs.toFixed(1)} ms, ${scrolled.longTasks} long tasks, all scored in ${((done.allScoredMs ?? 0) / 1000).toFixed(1)} s]`;
  });
});

/** Writes `perClass` generated shapes per class into `folder` (src/engine/demo/shapes.ts, in a child process). */
function generateShapes(folder: string, classes: string[], perClass: number): Promise<void> {
  const root = extension().extensionPath;
  const script = `
    const { writeShapeFolder } = require(${JSON.stringify(path.join(root, 'src/engine/demo/shapes.ts'))});
    writeShapeFolder({ out: ${JSON.stringify(folder)}, classes: ${JSON.stringify(classes)}, perClass: ${perClass}, seed: 5 })
      .then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: root,
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`generating ${folder} failed (${code}): ${err}`)),
    );
  });
}
