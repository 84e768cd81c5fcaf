// The similarity-matrices panel in the real extension host, on the tiny run trained from the
// generated folder: the numbers the webview holds and drew (read back through the hidden command
// met.similarity.snapshot: sums, order-sensitive weighted sums, fixed cells, the readout after
// moving the cursor as the arrow keys do) equal the engine's matrices for the same sample,
// asked for directly with 'similarity/compute' through the extension's exported engines; the
// colour scale is diverging exactly when values are negative; hidden and shown again, the
// panel rebuilds with the same settings and cursor (setState).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, tinyRun, waitFor } from '../fixtures';
import type { MatrixKind, RenderedMatrix } from '../../../webview-ui/similarity/protocol';

type Kind = MatrixKind;
const KINDS: Kind[] = ['sw', 'sb', 'dist'];

type Matrix = RenderedMatrix;
interface Snapshot {
  runDir: string;
  visible: boolean;
  readyCount: number;
  settings: { exits: number[]; perClass: number; split: string };
  state?: {
    runDir: string;
    settings?: { exits: number[]; perClass: number; split: string };
    cursor?: [number, number];
  };
  error?: string | null;
  rendered?: {
    seq: number;
    settings: { exits: number[]; perClass: number; split: string };
    n: number;
    files: string[];
    labels: number[];
    classStarts: number[];
    matrices: Matrix[];
    gr: number[];
    readout: {
      i: number;
      j: number;
      rowLabel: string;
      colLabel: string;
      rowImage: string | null;
      colImage: string | null;
      values: { exit: number; kind: Kind; text: string }[];
    } | null;
    bandLabels: string[];
  } | null;
}
interface EngineResult {
  files: string[];
  labels: Int32Array;
  classes: string[];
  classStarts: number[];
  exits: { exit: number; layer: number; gr: number; sw: Float32Array; sb: Float32Array; dist: Float32Array }[];
}
interface Api {
  engines: { request(method: string, params: unknown): Promise<unknown> };
}

const snapshotOf = async (dir: string) =>
  (await vscode.commands.executeCommand<Snapshot[]>('met.similarity.snapshot')).find((s) => s.runDir === dir);
const sameSettings = (a: Snapshot['settings'] | undefined, b: Snapshot['settings']) =>
  !!a && JSON.stringify([a.exits, a.perClass, a.split]) === JSON.stringify([b.exits, b.perClass, b.split]);

/** The webview's readout format (webview-ui/similarity/main.ts fmtValue). */
function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
}

/** The same reductions, in the same order, as the webview's matrixSnapshot. */
function reduce(a: Float32Array, n: number): { sum: number; weightedSum: number; min: number; max: number } {
  let sum = 0;
  let weightedSum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const v = a[i * n + j];
      sum += v;
      weightedSum += v * (((31 * i + 17 * j) % 13) + 1);
      if (v < min) min = v;
      if (v > max) max = v;
    }
  return { sum, weightedSum, min, max };
}

async function openAndWait(runDir: string, settings: Snapshot['settings']): Promise<Snapshot> {
  const opened = await vscode.commands.executeCommand<string>('met.showSimilarity', { runDir, ...settings });
  assert.equal(opened, runDir);
  return waitFor(
    `the similarity panel to render ${JSON.stringify(settings)}`,
    async () => {
      const s = await snapshotOf(runDir);
      if (s?.error) throw new Error(`the panel shows an error: ${s.error}`);
      return s?.rendered && sameSettings(s.rendered.settings, settings) ? s : undefined;
    },
    120_000,
  );
}

suite('similarity matrices', () => {
  let api: Api;
  suiteSetup(async function () {
    this.timeout(240_000);
    api = (await activate()).exports as Api;
    await tinyRun();
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("two exits side by side: every heatmap's numbers equal the engine's matrices for the same sample", async function () {
    this.timeout(180_000);
    const run = await tinyRun();
    const settings = { exits: [0, 2], perClass: 5, split: 'train' };
    const snap = await openAndWait(run.runDir, settings);
    const r = snap.rendered!;
    const eng = (await api.engines.request('similarity/compute', { runDir: run.runDir, ...settings })) as EngineResult;
    const n = eng.files.length;
    assert.equal(n, 20, '4 classes x 5 images');
    assert.equal(r.n, n);
    assert.deepEqual(r.files, eng.files, 'the same (seeded, class-sorted) sample');
    assert.deepEqual(r.labels, Array.from(eng.labels));
    assert.deepEqual(r.classStarts, Array.from(eng.classStarts));
    assert.deepEqual(
      r.gr,
      eng.exits.map((e) => e.gr),
    );
    // S^w and S^b come from the last exit's logits: the same for both exits, drawn once; then
    // the two exits' distance matrices side by side. (Six heatmaps if the engine's S differed.)
    const sharedS = (['sw', 'sb'] as const).every((k) => eng.exits[0][k].every((v, i) => v === eng.exits[1][k][i]));
    assert.ok(sharedS, 'S^w and S^b are the same for both exits');
    assert.deepEqual(
      r.matrices.map((m) => `${m.kind}${m.exit}`),
      ['sw0', 'sb0', 'dist0', 'dist2'],
    );
    for (const m of r.matrices) {
      const e = eng.exits.find((x) => x.exit === m.exit)!;
      const a = e[m.kind];
      assert.equal(a.length, n * n);
      const want = reduce(a, n);
      const what = `exit ${m.exit + 1} ${m.kind}`;
      // The same float32 values reduced in the same order: equal to the last bit.
      assert.equal(m.sum, want.sum, `${what}: sum`);
      assert.equal(m.weightedSum, want.weightedSum, `${what}: order-sensitive sum`);
      assert.equal(m.min, want.min, `${what}: min`);
      assert.equal(m.max, want.max, `${what}: max`);
      for (const [i, j, v] of m.cells) assert.equal(v, a[i * n + j], `${what}: cell (${i}, ${j})`);
      // One domain per kind over both exits; diverging exactly when a value is negative.
      const lo = Math.min(...eng.exits.map((x) => reduce(x[m.kind], n).min));
      assert.equal(m.scale, lo < 0 ? 'diverging' : 'sequential', `${what}: scale`);
      // The canvas shows the scale's colour for the cell's value (nearest-neighbour scaling).
      assert.equal(m.pixel.length, 3, `${what}: pixel read back`);
      m.pixel.forEach((c, k) =>
        assert.ok(Math.abs(c - m.expectedPixel[k]) <= 2, `${what}: drawn ${m.pixel} vs scale ${m.expectedPixel}`),
      );
    }
    // Graph regularization's structure: S^w is zero off the class blocks, S^b zero on them.
    const sw = eng.exits[0].sw;
    const sb = eng.exits[0].sb;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (eng.labels[i] === eng.labels[j]) assert.equal(sb[i * n + j], 0);
        else assert.equal(sw[i * n + j], 0);
      }
    assert.deepEqual(r.bandLabels, eng.classes, 'one band label per class along the axes');
  });

  test('moving the cursor (as the arrow keys do) shows both images, their labels and the values', async function () {
    this.timeout(120_000);
    const run = await tinyRun();
    const settings = { exits: [0, 2], perClass: 5, split: 'train' };
    await openAndWait(run.runDir, settings);
    const eng = (await api.engines.request('similarity/compute', { runDir: run.runDir, ...settings })) as EngineResult;
    const n = eng.files.length;
    for (const [i, j] of [
      [3, 17],
      [12, 12],
      [19, 0],
    ]) {
      await vscode.commands.executeCommand('met.similarity.focusCell', run.runDir, i, j);
      const s = await waitFor(`the readout of cell (${i}, ${j})`, async () => {
        const x = await snapshotOf(run.runDir);
        return x?.rendered?.readout?.i === i && x.rendered.readout.j === j ? x : undefined;
      });
      const ro = s.rendered!.readout!;
      assert.equal(ro.rowLabel, eng.classes[eng.labels[i]]);
      assert.equal(ro.colLabel, eng.classes[eng.labels[j]]);
      assert.ok(ro.rowImage && ro.colImage, `both images shown (${ro.rowImage}, ${ro.colImage})`);
      const expected = KINDS.flatMap((kind) =>
        eng.exits.map((e) => ({ exit: e.exit, kind, text: fmtValue(e[kind][i * n + j]) })),
      );
      assert.deepEqual(ro.values, expected);
      assert.deepEqual(s.state?.cursor, [i, j], 'the cursor is kept with setState');
      for (const m of s.rendered!.matrices) {
        const cursorCell = m.cells[m.cells.length - 1];
        assert.deepEqual(cursorCell.slice(0, 2), [i, j]);
      }
    }
  });

  test('hidden and shown again, the webview rebuilds with the same settings and cursor', async function () {
    this.timeout(120_000);
    const run = await tinyRun();
    const settings = { exits: [1], perClass: 3, split: 'train' };
    const first = await openAndWait(run.runDir, settings);
    assert.equal(first.rendered!.n, 12);
    await vscode.commands.executeCommand('met.similarity.focusCell', run.runDir, 7, 2);
    const before = await waitFor('the cursor at (7, 2)', async () => {
      const x = await snapshotOf(run.runDir);
      return x?.rendered?.readout?.i === 7 && x.rendered.readout.j === 2 ? x : undefined;
    });
    await vscode.window.showTextDocument(vscode.Uri.file(path.join(run.runDir, 'config.json')), { preview: false });
    await waitFor('the panel to be hidden', async () => (await snapshotOf(run.runDir))?.visible === false);
    await vscode.commands.executeCommand('met.showSimilarity', run.runDir);
    const again = await waitFor(
      'a rebuilt webview to render',
      async () => {
        const s = await snapshotOf(run.runDir);
        return s && s.readyCount > before.readyCount && s.rendered ? s : undefined;
      },
      60_000,
    );
    assert.deepEqual(again.rendered!.settings, settings);
    assert.deepEqual(again.state!.cursor, [7, 2]);
    assert.deepEqual(again.rendered!.readout, before.rendered!.readout);
    assert.deepEqual(again.rendered!.matrices, before.rendered!.matrices);
  });

  test("localResourceRoots hold only the workspace, the run and the extension, whatever the run's dataset.root names", async function () {
    this.timeout(180_000);
    const run = await tinyRun();
    // A copy of the run whose config.json names '/' as its image folder (any run folder can).
    const dir = path.join(path.dirname(run.runDir), `root-slash-${Date.now()}`);
    fs.cpSync(run.runDir, dir, { recursive: true });
    try {
      const cfgFile = path.join(dir, 'config.json');
      const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as { dataset: { root: string } };
      cfg.dataset.root = '/';
      fs.writeFileSync(cfgFile, JSON.stringify(cfg));
      assert.equal(await vscode.commands.executeCommand('met.showSimilarity', { runDir: dir }), dir);
      const snap = await waitFor('the panel for the copy', async () =>
        (await vscode.commands.executeCommand<(Snapshot & { roots: string[] })[]>('met.similarity.snapshot')).find(
          (s) => s.runDir === dir,
        ),
      );
      const ws = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
      const ext = vscode.extensions.all.find((e) => e.packageJSON?.name === 'met-vscode')?.extensionPath ?? '';
      assert.ok(!snap.roots.includes('/') && !snap.roots.includes(path.parse(dir).root), snap.roots.join(', '));
      for (const r of snap.roots)
        assert.ok(
          r === dir ||
            ws.some((w) => r === w || r.startsWith(w + path.sep)) ||
            (ext && r.startsWith(ext + path.sep)) ||
            path.basename(r) === 'thumbs',
          `${r} is neither the workspace, the run nor the extension (${snap.roots.join(', ')})`,
        );
      assert.ok(snap.roots.includes(dir), 'the run itself is a root');
    } finally {
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a run that is not finished is refused with a message naming it', async function () {
    const dir = path.join(path.dirname((await tinyRun()).runDir), `not-a-run-${Date.now()}`);
    fs.mkdirSync(dir, { recursive: true });
    try {
      assert.equal(await vscode.commands.executeCommand('met.showSimilarity', dir), undefined);
      assert.equal(await snapshotOf(dir), undefined);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
