// The one place where live training updates meet the UI. The engine client (engineClient.ts)
// fires an update for every event the engine process reports; the status bar, the runs view and
// the training dashboard subscribe. Finished or reloaded runs are read from their run folder
// (metrics.jsonl, summary.json), so nothing here is the only copy of anything.
import * as vscode from 'vscode';
import type { TrainEvent } from '../engine/train/trainer';

export interface TrainingUpdate {
  /** Absolute run folder (`.met/runs/<time>-<variant>` unless the config says otherwise). */
  runDir: string;
  event: TrainEvent;
}

export interface TrainingState {
  runDir: string;
  /** 'starting' until the engine reports its first event. */
  status: 'starting' | 'running' | 'stopped' | 'done' | 'failed';
  /** Last event of each type seen for this run. */
  last: Partial<Record<TrainEvent['type'], TrainEvent>>;
  error?: string;
}

const updates = new vscode.EventEmitter<TrainingUpdate>();
const states = new vscode.EventEmitter<TrainingState>();

/** Every engine event of every run, as it arrives. */
export const onDidTrainingUpdate: vscode.Event<TrainingUpdate> = updates.event;
/** A run's status changed (started, first event, stopped, done, failed). */
export const onDidChangeTrainingState: vscode.Event<TrainingState> = states.event;

export function fireTrainingUpdate(u: TrainingUpdate): void {
  updates.fire(u);
}

export function fireTrainingState(s: TrainingState): void {
  states.fire(s);
}
