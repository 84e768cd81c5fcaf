// The "MET" output channel: what the extension does and everything the engine processes say
// (their log notifications, and their raw stdout/stderr, where native libraries and crashes
// write). A LogOutputChannel, so each line has a time and a level and the user can filter.
import * as vscode from 'vscode';

let channel: vscode.LogOutputChannel | undefined;

export function initLog(context: vscode.ExtensionContext): vscode.LogOutputChannel {
  if (!channel) {
    channel = vscode.window.createOutputChannel('MET', { log: true });
    context.subscriptions.push(channel, { dispose: () => (channel = undefined) });
  }
  return channel;
}

/** The channel (created on first use if activate has not yet done it, e.g. in a test). */
export function log(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel('MET', { log: true });
  return channel;
}

export function showLog(): void {
  log().show(true);
}

/**
 * The last messages shown about trainings (newest last), also written to the log. The
 * integration tests read them through the extension's API: a notification toast itself cannot
 * be read back through the vscode API.
 */
export const shownMessages: { level: 'info' | 'error'; text: string; at: number }[] = [];

export function recordMessage(level: 'info' | 'error', text: string): void {
  shownMessages.push({ level, text, at: Date.now() });
  if (shownMessages.length > 50) shownMessages.shift();
  log()[level](text);
}

/** An error message with a "Show log" button (for anything whose details are in the log). */
export async function showErrorWithLog(message: string, ...extra: string[]): Promise<string | undefined> {
  recordMessage('error', message);
  const pick = await vscode.window.showErrorMessage(message, 'Show log', ...extra);
  if (pick === 'Show log') showLog();
  return pick;
}
