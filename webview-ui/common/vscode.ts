// What every MET webview script starts with: the VS Code API (acquireVsCodeApi may be called
// once per webview, so each panel's main.ts calls this once) typed with the panel's messages
// and state, a getElementById shorthand for the stable ids the host's markup sets, and the start
// state that a reload revives (initialState).

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

/**
 * The panel's state at start: what setState kept, when it is for the same source as the markup
 * names now (`same`; a reload or a rebuilt webview revives the panel from it), else `fresh`.
 * Kept in setState at once, so a reload before the first render still finds the source.
 */
export function initialState<State>(
  vscode: VsCodeApi<unknown, State>,
  fresh: State,
  same: (saved: State) => boolean,
): State {
  const saved = vscode.getState() as State | undefined;
  const state = saved && same(saved) ? saved : fresh;
  vscode.setState(state);
  return state;
}
