// The Runs view names who holds a run folder's lock (run.lock, src/engine/run/lock.ts): a run
// trained or evaluated by another process shows its owner's pid, host and start time.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, tinyRun, waitFor, workspaceDir } from '../fixtures';

interface Item {
  dir: string;
  tooltip: string;
}

const itemOf = async (dir: string) =>
  (await vscode.commands.executeCommand<Item[]>('met.runs.snapshot')).find((i) => i.dir === dir);

suite('MET runs view: run folder owner', () => {
  suiteSetup(async function () {
    this.timeout(240_000);
    await activate();
    await tinyRun();
  });

  test('the tooltip of a locked run names the lock holder; an unlocked run names none', async function () {
    this.timeout(60_000);
    const run = await tinyRun();
    const dir = path.join(workspaceDir(), '.met', 'runs', `synthetic-locked-${Date.now()}`);
    fs.cpSync(run.runDir, dir, { recursive: true });
    // This process is alive: the lock is a live one.
    const since = '2026-12-07T10:00:00.000Z';
    fs.writeFileSync(
      path.join(dir, 'run.lock'),
      JSON.stringify({ pid: process.pid, host: os.hostname(), since, command: 'met train' }),
    );
    const item = await waitFor('the locked copy in the view', () => itemOf(dir), 20_000);
    // MarkdownString.appendText escapes punctuation with backslashes and spaces as &nbsp;.
    const text = item.tooltip.replace(/\\/g, '').replace(/&nbsp;/g, ' ');
    assert.ok(
      text.includes(`Held by met train (pid ${process.pid} on ${os.hostname()}, since ${since}).`),
      `tooltip names the lock holder:\n${item.tooltip}`,
    );
    const plain = await waitFor('the original run in the view', () => itemOf(run.runDir), 20_000);
    assert.ok(!plain.tooltip.includes('Held by'), plain.tooltip);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
