// VS Code entry point: wires the modules together. No ML work happens on the extension host
// thread: the engine (src/engine, which never imports vscode) runs in forked processes of the CLI
// bundle (src/extension/engineClient.ts, src/server/engine.ts).
import * as path from 'node:path';
import * as vscode from 'vscode';
import { registerCodeLens } from './extension/codelens';
import { registerCompare } from './extension/compare';
import { type FineTuneArgs, type FineTuneResult, registerCommands, TINY_VIT } from './extension/commands';
import { registerDashboard } from './extension/dashboard';
import { type Engines, initEngines } from './extension/engineClient';
import { registerInspect } from './extension/inspect';
import { initLog, shownMessages } from './extension/log';
import { registerParamsPanel } from './extension/paramsPanel';
import { registerReattach } from './extension/reattach';
import { registerRunsView } from './extension/runsView';
import { registerSimilarity } from './extension/similarity';
import { TrainingStatusBar } from './extension/statusBar';
import { onDidChangeTrainingState, onDidTrainingUpdate } from './extension/trainingEvents';

/**
 * What activate() returns (`vscode.extensions.getExtension('met-tools.met-vscode').exports`).
 * Meant for the integration tests, which run in the same extension host: they must reach the
 * extension's own module instances (its event emitters, its engine processes), not a second copy.
 */
export interface MetApi {
  engines: Engines;
  /** The bundled demo backbone. */
  tinyVit: string;
  fineTune(args: FineTuneArgs): Promise<FineTuneResult | undefined>;
  /** Pid of the engine process of the newest active training (undefined when none runs). */
  trainingPid(): number | undefined;
  lastRunDir(): string | undefined;
  statusBarText(): string;
  /** Messages shown about trainings (finished, stopped, engine crashed...), newest last. */
  messages(): { level: 'info' | 'error'; text: string; at: number }[];
  onDidChangeTrainingState: typeof onDidChangeTrainingState;
  onDidTrainingUpdate: typeof onDidTrainingUpdate;
}

export function activate(context: vscode.ExtensionContext): MetApi {
  const channel = initLog(context);
  channel.info(
    `MET ${context.extension.packageJSON.version as string} activated (extension host: node ${process.version}, ${vscode.env.appHost})`,
  );
  const engines = initEngines(context);
  const statusBar = new TrainingStatusBar();
  context.subscriptions.push(statusBar);
  registerCommands(context, engines);
  // The other parts of the extension register themselves.
  registerCodeLens(context);
  registerRunsView(context);
  registerDashboard(context);
  registerSimilarity(context);
  registerParamsPanel(context);
  registerInspect(context);
  registerCompare(context);
  // Trainings still running from before a reload (or from another window) are followed again.
  registerReattach(context, engines);

  return {
    engines,
    tinyVit: path.join(context.extensionPath, TINY_VIT),
    fineTune: async (args) => vscode.commands.executeCommand<FineTuneResult | undefined>('met.fineTune', args),
    trainingPid: () => {
      const a = engines.active();
      return a[a.length - 1]?.pid;
    },
    lastRunDir: () => engines.lastRunDir,
    statusBarText: () => statusBar.text,
    messages: () => [...shownMessages],
    onDidChangeTrainingState,
    onDidTrainingUpdate,
  };
}

export function deactivate(): void {
  // Disposables in context.subscriptions let go of the engines: a training goes on in its own
  // process (or stops with a checkpoint, per met.training.whenWindowCloses), see Engines.dispose.
}
