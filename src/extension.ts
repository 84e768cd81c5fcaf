// VS Code entry point. Kept minimal until the extension issue: the engine never imports
// `vscode`, and this file never does ML work on the extension host thread.
import * as vscode from 'vscode';

export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push(
    vscode.commands.registerCommand('met.checkGpu', () => {
      void vscode.window.showInformationMessage('MET: GPU check runs in the engine process (coming with the extension issue).');
    }),
  );
}

export function deactivate(): void {}
