// One lifecycle for every MET webview panel (dashboard, similarity, params, Inspect exits):
//   - the panel map: one panel per key (run folder, config file, run + images), revealed when open;
//   - ready gating: nothing is posted until the webview says 'ready'; a hidden webview is
//     destroyed (no retainContextWhenHidden), so it is not ready again until it says so, and
//     each 'ready' makes the panel send everything again (onReady);
//   - state: the last 'state' message is kept as the panel's snapshot (the webview itself keeps
//     its setState; the serializer hands that back after a window reload);
//   - the WebviewPanelSerializer (restore after a reload) and the test snapshot command
//     (met.<panel>.snapshot: what each open webview last reported).
// The webview side of 'ready' / 'state' / 'test' is webview-ui/common/protocol.ts.

import * as vscode from 'vscode';
import type { PanelSnapshot, ReadyMessage, StateMessage } from '../../../webview-ui/common/protocol';

type AnyState = StateMessage<unknown, unknown>;

/** The panels of one view type, by key. */
export class PanelHost<P extends HostedPanel<{ type: string }, { type: string }, AnyState>> {
  readonly panels = new Map<string, P>();

  constructor(readonly viewType: string) {}

  get(key: string): P | undefined {
    return this.panels.get(key);
  }

  has(key: string): boolean {
    return this.panels.has(key);
  }

  all(): P[] {
    return [...this.panels.values()];
  }

  /**
   * The open panel for `key`, revealed (in `revealColumn`; undefined: where it is), or a new
   * webview panel handed to `create`, which constructs the HostedPanel (it joins the map).
   */
  open(o: {
    key: string;
    title: string;
    options: vscode.WebviewPanelOptions & vscode.WebviewOptions;
    column?: vscode.ViewColumn;
    revealColumn?: vscode.ViewColumn;
    create: (panel: vscode.WebviewPanel) => P;
  }): P {
    const open = this.panels.get(o.key);
    if (open) {
      open.panel.reveal(o.revealColumn);
      return open;
    }
    const panel = vscode.window.createWebviewPanel(
      this.viewType,
      o.title,
      o.column ?? vscode.ViewColumn.Active,
      o.options,
    );
    return o.create(panel);
  }

  /**
   * Registers the serializer, the test snapshot command and the disposal of every panel with the
   * extension. `restore` revives a panel from the state its webview kept (undefined: VS Code had
   * none yet); when it returns nothing, the empty panel is closed rather than left blank.
   * `snapshotFields`: what identifies each panel in the snapshot (besides visible, readyCount, the
   * webview's localResourceRoots and the last 'state' message).
   */
  register(
    context: vscode.ExtensionContext,
    o: {
      snapshotCommand: string;
      snapshotFields: (p: P) => object;
      restore: (panel: vscode.WebviewPanel, state: unknown) => Promise<P | undefined>;
    },
  ): void {
    context.subscriptions.push(
      // Not contributed (tests only).
      vscode.commands.registerCommand(o.snapshotCommand, () =>
        this.all().map((p) => ({
          ...o.snapshotFields(p),
          visible: p.panel.visible,
          readyCount: p.readyCount,
          roots: (p.panel.webview.options.localResourceRoots ?? []).map((u) => u.fsPath),
          ...p.snapshot,
        })),
      ),
      vscode.window.registerWebviewPanelSerializer(this.viewType, {
        deserializeWebviewPanel: async (panel: vscode.WebviewPanel, state: unknown) => {
          if (!(await o.restore(panel, state))) panel.dispose();
        },
      }),
      { dispose: () => this.all().forEach((p) => p.dispose()) },
    );
  }
}

/**
 * One webview panel on a PanelHost. Subclasses set the webview's options and html once their own
 * fields exist (start()), answer 'ready' (onReady: send everything), and handle their own messages.
 */
export abstract class HostedPanel<
  HostMsg extends { type: string },
  WebMsg extends { type: string },
  State extends AnyState,
>
  implements vscode.Disposable
{
  protected readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private disposed = false;
  /** How many times a webview document said 'ready' (1 + each time it was rebuilt after being hidden). */
  readyCount = 0;
  /** What the webview last reported (its 'state' message); cleared when a new document starts. */
  snapshot: PanelSnapshot<State> | undefined;

  constructor(
    /** The PanelHost this panel is on (only its map is used here). */
    private readonly host: { readonly panels: Map<string, object> },
    protected readonly context: vscode.ExtensionContext,
    readonly panel: vscode.WebviewPanel,
    private _key: string,
  ) {
    host.panels.set(_key, this);
    panel.iconPath = vscode.Uri.joinPath(context.extensionUri, 'media', 'icon.svg');
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: WebMsg | ReadyMessage | State) => this.receive(m)),
      panel.onDidChangeViewState(() => {
        // A hidden webview is destroyed (no retainContextWhenHidden); it says 'ready' again when shown.
        if (!panel.visible) this.ready = false;
      }),
    );
  }

  get key(): string {
    return this._key;
  }
  get isReady(): boolean {
    return this.ready;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Sets the webview's options and its document (again: a fresh document, which says 'ready'). */
  protected start(options: vscode.WebviewOptions, html: string): void {
    this.ready = false;
    this.panel.webview.options = options;
    this.panel.webview.html = html;
  }

  /** The panel now shows something else (Inspect: another run or images): it moves in the map. */
  protected rekey(key: string): void {
    if (this.host.panels.get(this._key) === this) this.host.panels.delete(this._key);
    this._key = key;
    this.host.panels.set(key, this);
  }

  private receive(m: WebMsg | ReadyMessage | State): void {
    if (m.type === 'ready') {
      this.ready = true;
      this.readyCount++;
      this.snapshot = undefined;
      void this.onReady();
    } else if (m.type === 'state') {
      const { type: _type, ...rest } = m as State;
      this.snapshot = rest as PanelSnapshot<State>;
      this.onState(m as State);
    } else void this.onMessage(m as WebMsg);
  }

  /** A webview document is ready: send it everything it shows. */
  protected abstract onReady(): void | Promise<void>;
  /** The panel's own messages (all but 'ready' and 'state'). */
  protected onMessage(_m: WebMsg): void | Promise<void> {}
  /** After the snapshot was kept. */
  protected onState(_m: State): void {}
  /** Once, when the panel closes (before its disposables). */
  protected onDispose(): void {}

  /** Posts to the webview when it is ready; otherwise dropped: the next 'ready' gets everything again. */
  protected post(m: HostMsg): void {
    if (this.ready && !this.disposed) void this.panel.webview.postMessage(m);
  }

  /** Resolves when the webview is ready (true), or false when it closed or `ms` passed. */
  async whenReady(ms = 30_000): Promise<boolean> {
    for (const t0 = Date.now(); !this.ready && !this.disposed && Date.now() - t0 < ms;)
      await new Promise((r) => setTimeout(r, 50));
    return this.ready && !this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.host.panels.get(this._key) === this) this.host.panels.delete(this._key);
    this.onDispose();
    this.disposables.forEach((d) => d.dispose());
    this.disposables.length = 0;
    this.panel.dispose();
  }
}
