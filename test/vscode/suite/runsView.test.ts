// The "MET runs" tree view in the real extension host: it lists a run trained with the CLI with
// its status and per-exit accuracy from summary.json, follows run folders appearing and going on
// disk, tells running / stopped runs apart, deletes a run and refuses to delete a running one.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, backbone, dataDir, extension, tinyRun, waitFor, workspaceDir } from '../fixtures';

interface Item {
  dir: string;
  label: string;
  description: string;
  tooltip: string;
  contextValue: string;
  icon: string;
  status: string;
}

const items = () => vscode.commands.executeCommand<Item[]>('met.runs.snapshot');
const itemOf = async (dir: string) => (await items()).find((i) => i.dir === dir);
/** A tooltip's text as shown: MarkdownString.appendText writes spaces as &nbsp; and escapes punctuation. */
const plain = (md: string) => md.replace(/&nbsp;/g, ' ').replace(/\\(.)/g, '$1');

/** A copy of a finished run folder, changed by `edit` (a synthetic run in another state). */
function copyRun(from: string, name: string, edit: (dir: string) => void): string {
  const dir = path.join(workspaceDir(), '.met', 'runs', name);
  fs.cpSync(from, dir, { recursive: true });
  edit(dir);
  return dir;
}

suite('MET runs view', () => {
  suiteSetup(async function () {
    this.timeout(240_000);
    await activate();
    await tinyRun();
  });

  test('the view is contributed in the MET activity-bar container', async () => {
    const pkg = (await activate()).packageJSON as {
      contributes: {
        views: Record<string, { id: string; name: string }[]>;
        viewsContainers: { activitybar: { id: string; icon: string }[] };
      };
    };
    assert.ok(pkg.contributes.viewsContainers.activitybar.some((c) => c.id === 'met' && c.icon === 'media/icon.svg'));
    assert.deepEqual(
      pkg.contributes.views.met.map((v) => [v.id, v.name]),
      [['met.runs', 'Runs']],
    );
    // The view can be focused (it is registered with a provider).
    await vscode.commands.executeCommand('met.runs.focus');
  });

  test('a run trained with the CLI is listed as done, with the per-exit accuracy of summary.json', async () => {
    const run = await tinyRun();
    // The view may have seen the folder while the CLI was still writing it: wait for 'done'.
    const item = await waitFor(
      `${run.runDir} in the view as done`,
      async () => {
        const i = await itemOf(run.runDir);
        return i?.status === 'done' ? i : undefined;
      },
      20_000,
    );
    assert.equal(item.label, path.basename(run.runDir));
    assert.equal(item.status, 'done');
    assert.equal(item.icon, 'pass');
    assert.equal(item.contextValue, 'metRun');
    const acc = run.summary.exits.map((e) => (e.accuracy === null ? '–' : (100 * e.accuracy).toFixed(1)));
    assert.ok(item.description.startsWith('done'), item.description);
    assert.ok(
      item.description.includes(`acc ${acc.join(' / ')}%`),
      `description "${item.description}" has the test accuracies ${acc.join(' / ')}`,
    );
    for (const e of run.summary.exits) {
      const row = `| ${e.exit} | ${e.layer} | ${e.accuracy === null ? '–' : `${(100 * e.accuracy).toFixed(1)}%`} |`;
      assert.ok(item.tooltip.includes(row), `tooltip has the row ${row}:\n${item.tooltip}`);
    }
  });

  test('run folders appearing and going on disk update the view; stopped and running are told apart', async function () {
    this.timeout(60_000);
    const run = await tinyRun();
    // Stopped: no summary yet, a checkpoint, and the status its last owner wrote when it stopped.
    const stopped = copyRun(run.runDir, `synthetic-stopped-${Date.now()}`, (d) => {
      fs.rmSync(path.join(d, 'summary.json'));
      const st = JSON.parse(fs.readFileSync(path.join(d, 'status.json'), 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(
        path.join(d, 'status.json'),
        JSON.stringify({ ...st, phase: 'stopped', stopped: 'SIGINT received' }),
      );
    });
    const s = await waitFor('the stopped copy in the view', () => itemOf(stopped), 20_000);
    assert.equal(s.status, 'stopped');
    assert.equal(s.contextValue, 'metRunResumable', 'Resume in the context menu of a stopped run');
    assert.match(s.description, /^stopped · epoch 1\/1 · val acc /);
    assert.match(s.tooltip, /SIGINT received/);
    // Running in another process (`met train` in a terminal): its run.lock names a live process.
    const lock = (d: string, pid: number) =>
      fs.writeFileSync(
        path.join(d, 'run.lock'),
        JSON.stringify({ pid, host: os.hostname(), since: new Date().toISOString(), command: 'met train' }),
      );
    const running = copyRun(run.runDir, `synthetic-running-${Date.now()}`, (d) => {
      fs.rmSync(path.join(d, 'summary.json'));
      lock(d, process.pid);
    });
    const r = await waitFor('the running copy in the view', () => itemOf(running), 20_000);
    assert.equal(r.status, 'running');
    assert.equal(r.contextValue, 'metRunRunning', 'no Delete in the context menu of a running run');
    assert.match(
      plain(r.tooltip),
      new RegExp(`Held by met train \\(pid ${process.pid} `),
      'the tooltip names the lock holder',
    );
    // Its owner gone (killed: the lock stays, its pid does not run): stopped, with Resume, at the next poll.
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    lock(running, deadPid);
    const t0 = Date.now();
    const k = await waitFor(
      'the run whose owner is gone to read as stopped',
      async () => {
        const i = await itemOf(running);
        return i?.status === 'stopped' ? i : undefined;
      },
      20_000,
    );
    assert.ok(Date.now() - t0 < 5000, `stopped shown after ${Date.now() - t0} ms`);
    assert.equal(k.contextValue, 'metRunResumable');
    assert.match(k.tooltip, new RegExp(`pid ${deadPid}\\) ended without finishing`));
    assert.match(plain(k.tooltip), new RegExp(`left by met train \\(pid ${deadPid} .*no longer runs`));
    lock(running, process.pid);
    await waitFor(
      'the running copy again',
      async () => (await itemOf(running))?.status === 'running' || undefined,
      20_000,
    );

    // Delete refuses a running run and leaves it alone.
    assert.equal(await vscode.commands.executeCommand('met.runs.delete', running, { confirm: false }), false);
    assert.ok(fs.existsSync(running));
    fs.rmSync(running, { recursive: true, force: true });
    await waitFor('the removed folder to leave the view', async () => !(await itemOf(running)), 20_000);

    // Delete (confirmation skipped) removes the folder and the item.
    assert.equal(await vscode.commands.executeCommand('met.runs.delete', stopped, { confirm: false }), true);
    assert.ok(!fs.existsSync(stopped));
    await waitFor('the deleted run to leave the view', async () => !(await itemOf(stopped)), 20_000);
    // The real run is still there.
    assert.ok(await itemOf(run.runDir));
  });

  test('Delete refuses a folder that is not a MET run', async () => {
    const dir = path.join(workspaceDir(), 'not-a-run');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), '{"something": "else"}');
    assert.equal(await vscode.commands.executeCommand('met.runs.delete', dir, { confirm: false }), false);
    assert.ok(fs.existsSync(dir));
  });

  test('Open shows the dashboard of the run', async () => {
    const run = await tinyRun();
    const item = (await itemOf(run.runDir))!;
    const opened = await vscode.commands.executeCommand<string>('met.runs.open', item.dir);
    assert.equal(opened, run.runDir);
  });

  test('Stop in the view stops a `met train` running in a terminal after its step, with a checkpoint; it shows as stopped with Resume', async function () {
    this.timeout(240_000);
    const runDir = path.join(workspaceDir(), '.met', 'runs', `terminal-${Date.now()}`);
    const cli = path.join(extension().extensionPath, 'dist', 'cli.js');
    const args = ['train', '--data', dataDir(), '--weights', backbone(), '--heads', '4', '--out', runDir];
    const p = spawn(process.execPath, [cli, ...args, '--epochs', '200', '--batch', '8', '--threads', '1'], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    const item = await waitFor(
      'the terminal training in the view as running',
      async () => {
        const i = await itemOf(runDir);
        return i?.status === 'running' && fs.existsSync(path.join(runDir, 'checkpoint.safetensors')) ? i : undefined;
      },
      120_000,
    );
    assert.equal(item.contextValue, 'metRunRunning');
    assert.deepEqual(await vscode.commands.executeCommand('met.runs.stop', runDir), [runDir]);
    assert.equal(await exited, 130, err);
    assert.match(err, /stopped at step \d+: stopped in VS Code/);
    const stopped = await waitFor(
      'the stopped run in the view',
      async () => {
        const i = await itemOf(runDir);
        return i?.status === 'stopped' ? i : undefined;
      },
      20_000,
    );
    assert.equal(stopped.contextValue, 'metRunResumable');
    assert.match(plain(stopped.tooltip), /stopped in VS Code/);
  });
});
