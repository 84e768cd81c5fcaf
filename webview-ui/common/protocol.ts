// The core of every MET webview's protocol (dashboard, similarity, params, Inspect exits): the
// messages the panel host (src/extension/panels/panelHost.ts) handles the same way for each
// panel. Each panel's protocol.ts extends these with its own messages instead of re-declaring
// them. Type-only: no DOM, no Node, no vscode.
//
//   webview -> host  'ready'  its script runs and listens (messages posted before that are lost,
//                             so the host posts nothing until it comes; a webview rebuilt after
//                             being hidden says it again and gets everything again)
//                    'state'  after each render: what it keeps with setState, the rendered values
//                             of its stable elements, and panel-specific extras (an error, timings);
//                             the host keeps the last one for the test snapshot command
//   host -> webview  'test'   test-only actions (the host's met.<panel>.test command): drive the
//                             UI through the same code paths as a user's input

export interface ReadyMessage {
  type: 'ready';
}

/** `Extra`: fields besides state and rendered (similarity / params: `error`; Inspect: `perf`). */
export type StateMessage<State, Rendered, Extra extends object = object> = {
  type: 'state';
  state: State;
  rendered: Rendered;
} & Extra;

/** The messages every webview posts to its host. */
export type CoreWebviewMessage<State, Rendered, Extra extends object = object> =
  ReadyMessage | StateMessage<State, Rendered, Extra>;

/** What the host keeps of the last 'state' (the message without its type), for snapshots. */
export type PanelSnapshot<M extends { type: 'state' }> = Omit<M, 'type'>;

/** Host -> webview, tests only. */
export interface TestMessage<Action> {
  type: 'test';
  action: Action;
}
