// Trainings outlive their window (engineClient.ts: each is a detached process that owns its run
// folder). This module is the window's side of that:
//
// - Attach: when the window opens (or reloads), and whenever the run list changes, every run
//   whose run.lock names a live training started by VS Code on this machine is followed again:
//   the dashboard, the status bar and Cancel work as in the window that started it. A run whose
//   owner is gone is read as stopped (runFiles.ts, from the same lock) within a poll.
// - Closing: VS Code gives extensions no way to ask anything when a window closes (deactivate
//   cannot show UI or delay the close: microsoft/vscode#248516, #165128). So the question is asked
//   when a training starts, and the answer applies when the window goes:
//   met.training.whenWindowCloses 'keep' (go on; the default once answered) or 'stop' (stop
//   after the step with a checkpoint, unless a window attaches within CLOSE_STOP_GRACE_MS, as a
//   reload does). 'ask' asks per training; a training whose question was not answered goes on.

import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { pidAlive } from '../engine/run/lock';
import { readLock } from '../engine/run/runFolder';
import { type Engines, type Training, VSCODE_OWNER } from './engineClient';
import { log } from './log';
import { getRunIndex } from './runIndex';

export type WhenWindowCloses = 'ask' | 'keep' | 'stop';
const SETTING = 'training.whenWindowCloses';
/** Per-run answers to the question ('stop'; runs not listed go on), shared by all windows. */
const ANSWERS_KEY = 'met.whenWindowCloses.runs';

function setting(): WhenWindowCloses {
  return vscode.workspace.getConfiguration('met').get<WhenWindowCloses>(SETTING, 'ask');
}

/** Asks, for a training just started, what closing VS Code should do with it (setting 'ask'). */
export async function askWhenClosed(context: vscode.ExtensionContext, t: Training): Promise<void> {
  if (setting() !== 'ask') return;
  const stop = 'Stop it when VS Code closes';
  const keep = 'Keep training (don’t ask again)';
  const pick = await vscode.window.showInformationMessage(
    `MET: ${path.basename(t.runDir)} trains in a process of its own: closing or reloading VS Code does not stop it, and a reopened window follows it again.`,
    stop,
    keep,
  );
  if (pick === stop) {
    const answers = context.globalState.get<Record<string, 'stop'>>(ANSWERS_KEY, {});
    // Only runs that may still be running are worth remembering.
    for (const k of Object.keys(answers)) if (!readLock(k)) delete answers[k];
    answers[path.resolve(t.runDir)] = 'stop';
    await context.globalState.update(ANSWERS_KEY, answers);
  } else if (pick === keep) {
    await vscode.workspace.getConfiguration('met').update(SETTING, 'keep', vscode.ConfigurationTarget.Global);
  }
}

/**
 * The live trainings started by VS Code (run.lock's owner) among the workspace's runs that are
 * not followed yet, attached. Returns the run folders attached.
 */
export async function attachRunning(context: vscode.ExtensionContext, engines: Engines): Promise<string[]> {
  const attached: string[] = [];
  for (const r of await getRunIndex(context).runs()) {
    if (r.status !== 'running' && r.status !== 'starting') continue;
    if (engines.training(r.dir)?.active) continue;
    const lock = readLock(r.dir);
    if (!lock?.pid || lock.host !== os.hostname() || lock.command !== VSCODE_OWNER || !pidAlive(lock.pid)) continue;
    if (engines.attach(r.dir, lock.pid)) attached.push(r.dir);
  }
  return attached;
}

export function registerReattach(context: vscode.ExtensionContext, engines: Engines): void {
  engines.whenClosed = (runDir) => {
    const s = setting();
    if (s === 'stop' || s === 'keep') return s;
    return context.globalState.get<Record<string, 'stop'>>(ANSWERS_KEY, {})[path.resolve(runDir)] ?? 'keep';
  };
  if (!vscode.workspace.isTrusted) return; // no engine processes in Restricted Mode
  const index = getRunIndex(context);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let scanning = false;
  const scan = async () => {
    if (scanning) return;
    scanning = true;
    try {
      await attachRunning(context, engines);
    } catch (e) {
      log().warn(`looking for running trainings: ${(e as Error).message}`);
    } finally {
      scanning = false;
    }
  };
  context.subscriptions.push(
    index.onDidChange(() => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void scan(), 500);
    }),
    { dispose: () => timer && clearTimeout(timer) },
  );
  void scan();
}
