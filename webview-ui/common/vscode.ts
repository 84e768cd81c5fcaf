// What every MET webview script starts with: the VS Code API (acquireVsCodeApi may be called
// once per webview, so each panel's main.ts calls this once) typed with the panel's messages
// and state, and a getElementById shorthand for the stable ids the host's markup sets.

export interface VsCodeApi<Msg, State> {
  postMessage(m: Msg): void;
  getState(): unknown;
  setState(s: State): void;
}
declare function acquireVsCodeApi(): VsCodeApi<unknown, unknown>;

export function vscodeApi<Msg, State>(): VsCodeApi<Msg, State> {
  return acquireVsCodeApi() as VsCodeApi<Msg, State>;
}

export const $ = <T extends Element = HTMLElement>(id: string): T => document.getElementById(id) as unknown as T;
