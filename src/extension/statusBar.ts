// The status-bar item of a running training: epoch, percent and ETA, updated from the engine's
// step events (through trainingEvents.ts); a click opens the training dashboard. Hidden when
// nothing trains. The cancellable notification covers only the start (engine, data, compile);
// after the first step, progress lives here and in the dashboard.
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { TrainEvent } from '../engine/train/trainer';
import { onDidChangeTrainingState, onDidTrainingUpdate, type TrainingState } from './trainingEvents';

type Step = Extract<TrainEvent, { type: 'step' }>;
type Start = Extract<TrainEvent, { type: 'start' }>;

interface Tracked {
  status: TrainingState['status'];
  start?: Start;
  step?: Step;
  since: number;
}

export function formatEta(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** "2/10 · 45% · ETA 1m20s" for a step event. */
export function progressText(step: Step, start?: Start): string {
  const epochs = start?.epochs;
  const pct = Math.floor((100 * step.step) / Math.max(1, step.totalSteps));
  return `${epochs ? `epoch ${step.epoch}/${epochs}` : `epoch ${step.epoch}`} · ${pct}% · ETA ${formatEta(step.etaSec)}`;
}

export class TrainingStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly runs = new Map<string, Tracked>();
  private readonly subs: vscode.Disposable[] = [];
  private pending: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    this.item = vscode.window.createStatusBarItem('met.training', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'MET training';
    this.subs.push(
      onDidChangeTrainingState((s) => {
        const t = this.runs.get(s.runDir) ?? { status: s.status, since: Date.now() };
        t.status = s.status;
        if (s.status === 'done' || s.status === 'stopped' || s.status === 'failed') this.runs.delete(s.runDir);
        else this.runs.set(s.runDir, t);
        this.render();
      }),
      onDidTrainingUpdate((u) => {
        const t = this.runs.get(u.runDir);
        if (!t) return;
        if (u.event.type === 'start') t.start = u.event;
        else if (u.event.type === 'step') t.step = u.event;
        else return;
        // Steps of a small model come many times a second; a few repaints a second are enough.
        this.pending ??= setTimeout(() => {
          this.pending = undefined;
          this.render();
        }, 250);
      }),
    );
  }

  /** The text shown now ('' when hidden); for tests. */
  get text(): string {
    return this.runs.size ? this.item.text : '';
  }

  private render(): void {
    const active = [...this.runs.entries()].sort((a, b) => b[1].since - a[1].since);
    if (!active.length) {
      this.item.hide();
      return;
    }
    const [runDir, t] = active[0];
    const more = active.length > 1 ? ` (+${active.length - 1})` : '';
    const name = path.basename(runDir);
    if (t.step) {
      this.item.text = `$(sync~spin) MET ${progressText(t.step, t.start)}${more}`;
      this.item.tooltip = new vscode.MarkdownString(
        `**MET** training \`${name}\`\n\nstep ${t.step.step}/${t.step.totalSteps}, loss ${t.step.loss.toFixed(4)}, ${t.step.imgPerSec.toFixed(1)} img/s\n\nClick to open the training dashboard.`,
      );
    } else {
      this.item.text = `$(sync~spin) MET starting${more}`;
      this.item.tooltip = `MET: starting ${name} (loading data, compiling the training graph). Click to open the dashboard.`;
    }
    this.item.command = { title: 'Open the training dashboard', command: 'met.showDashboard', arguments: [runDir] };
    this.item.show();
  }

  dispose(): void {
    if (this.pending) clearTimeout(this.pending);
    this.subs.forEach((d) => d.dispose());
    this.item.dispose();
  }
}
