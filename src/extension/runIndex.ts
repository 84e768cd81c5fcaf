// The workspace's MET runs, shared by the runs view, the config CodeLens and the dashboard.
//
// Discovery is deliberately cheap: `.met/runs/*/` in each workspace folder (one readdir each, no
// workspace-wide glob), plus run folders elsewhere (a config's "out") that this window has seen
// in training events; those are remembered in workspaceState so they survive a reload. A run is
// a folder with a MET config.json (src/engine/run/run.ts). Everything shown comes from the run
// folder itself (config.json, summary.json, metrics.jsonl, the checkpoint) plus the live state
// the engine client reports through trainingEvents.ts, so a reload loses nothing.
//
// All file access is async (fs.promises): the extension host thread only waits on I/O.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { readLockAsync, RUN_LOCK_FILE } from '../engine/run/runFolder';
import { ownerState } from '../engine/run/lock';
import { type Live, norm, readRun, RUN_FILES, type RunInfo, stat } from './runFiles';
import { onDidChangeTrainingState, onDidTrainingUpdate, type TrainingState } from './trainingEvents';

const KNOWN_KEY = 'met.knownRunDirs';
const POLL_MS = 3000;

/**
 * The run list: discovery, a cache keyed by the files' mtimes, watchers, and live state. One
 * instance per extension (getRunIndex), disposed with the extension.
 */
export class RunIndex implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  /** The run list may have changed (files, live training events); consumers re-read runs(). */
  readonly onDidChange = this.changed.event;
  private readonly disposables: vscode.Disposable[] = [this.changed];
  private readonly live = new Map<string, Live>();
  private readonly cache = new Map<string, { sig: string; info: RunInfo | null }>();
  private readonly known: Set<string>;
  private loaded: Promise<RunInfo[]> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private due = 0;
  private polling = false;
  /** listSig() of the folders the current list was read from. */
  private loadedSig: string | undefined;
  private watchers: vscode.Disposable[] = [];

  constructor(private readonly memento: vscode.Memento) {
    this.known = new Set(memento.get<string[]>(KNOWN_KEY, []));
    this.disposables.push(
      onDidChangeTrainingState((s) => {
        const k = norm(s.runDir);
        this.liveOf(k).state = s;
        this.remember(k);
        this.schedule(50);
      }),
      onDidTrainingUpdate((u) => {
        const k = norm(u.runDir);
        const l = this.liveOf(k);
        if (u.event.type === 'step') {
          // Progress only changes descriptions; a few refreshes a second are plenty.
          l.lastStep = u.event;
          this.schedule(1000);
        } else {
          if (u.event.type === 'epoch') l.lastEpoch = u.event;
          if (u.event.type === 'start' && !l.state) l.state = { runDir: k, status: 'running', last: {} };
          this.remember(k);
          this.schedule(50);
        }
      }),
      vscode.workspace.onDidChangeWorkspaceFolders(() => {
        this.watch();
        this.schedule(50);
      }),
      { dispose: () => this.watchers.forEach((w) => w.dispose()) },
    );
    this.watch();
    const poller = setInterval(() => void this.poll(), POLL_MS);
    this.disposables.push({ dispose: () => clearInterval(poller) });
  }

  private liveOf(k: string): Live {
    let l = this.live.get(k);
    if (!l) this.live.set(k, (l = {}));
    return l;
  }

  /** The live state of a run this window's engine trains or trained, if any. */
  liveState(dir: string): TrainingState | undefined {
    return this.live.get(norm(dir))?.state;
  }

  /** The newest run this window is training now, if any. */
  activeRun(): string | undefined {
    let best: string | undefined;
    for (const [k, l] of this.live)
      if (l.state && (l.state.status === 'running' || l.state.status === 'starting')) best = k;
    return best;
  }

  private remember(dir: string): void {
    if (this.inRunsFolder(dir) || this.known.has(dir)) return;
    this.known.add(dir);
    void this.memento.update(KNOWN_KEY, [...this.known]);
  }

  private inRunsFolder(dir: string): boolean {
    return (vscode.workspace.workspaceFolders ?? []).some(
      (f) =>
        path.dirname(dir) === path.join(f.uri.fsPath, '.met', 'runs') ||
        path.dirname(path.dirname(dir)) === path.join(f.uri.fsPath, '.met', 'studies'),
    );
  }

  /**
   * Watch .met/runs: run folders appearing or going, and the files that change a run's status.
   * One recursive glob: narrower ones ('.met/runs/*' plus named files) missed events in
   * code-server (measured: the poll, not the watcher, found copied run folders). Changes of
   * metrics.jsonl (every step) and the engine's atomic-write temp files are ignored: live runs
   * report through training events, other processes' runs through the poll.
   */
  private watch(): void {
    this.watchers.forEach((w) => w.dispose());
    this.watchers = [];
    for (const f of vscode.workspace.workspaceFolders ?? []) {
      if (f.uri.scheme !== 'file') continue;
      const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(f, '.met/{runs,studies}/**'));
      const on = (uri: vscode.Uri) => {
        if (!/(metrics\.jsonl|train\.log|\.tmp-\d+(-\d+)?)$/.test(uri.path)) this.schedule(300);
      };
      this.watchers.push(w, w.onDidCreate(on), w.onDidDelete(on), w.onDidChange(on));
    }
  }

  /** Reload within `ms`. A reload already due sooner stands (so a stream of step events, each
   *  asking for one within a second, gets one a second rather than postponing it forever). */
  schedule(ms = 300): void {
    const due = Date.now() + ms;
    if (this.timer && this.due <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.loaded = null;
      this.changed.fire();
    }, ms);
  }

  /** Re-read now (e.g. the refresh button). */
  async refresh(): Promise<RunInfo[]> {
    this.cache.clear();
    this.loaded = null;
    const r = await this.runs();
    this.changed.fire();
    return r;
  }

  /** The workspace's runs, newest first. */
  runs(): Promise<RunInfo[]> {
    if (!this.loaded) {
      const p = this.load();
      this.loaded = p;
      // A failed read must not stick: a rejected promise kept here would leave the view empty
      // until some file changed again (a finished run's files never do).
      p.catch(() => {
        if (this.loaded === p) this.loaded = null;
      });
    }
    return this.loaded;
  }

  /** A run by folder, freshly read (cached only while its files and live state are unchanged). */
  async find(dir: string): Promise<RunInfo | undefined> {
    return (await this.info(dir)) ?? undefined;
  }

  private async candidates(): Promise<string[]> {
    const dirs = new Set<string>();
    for (const f of vscode.workspace.workspaceFolders ?? []) {
      if (f.uri.scheme !== 'file') continue;
      const root = path.join(f.uri.fsPath, '.met', 'runs');
      try {
        for (const e of await fs.promises.readdir(root, { withFileTypes: true }))
          if (e.isDirectory()) dirs.add(path.join(root, e.name));
      } catch {
        /* no runs yet */
      }
    }
    // The runs of ablation studies (met ablate): .met/studies/<study>/<variant>/.
    for (const f of vscode.workspace.workspaceFolders ?? []) {
      if (f.uri.scheme !== 'file') continue;
      const root = path.join(f.uri.fsPath, '.met', 'studies');
      let studies: fs.Dirent[] = [];
      try {
        studies = await fs.promises.readdir(root, { withFileTypes: true });
      } catch {
        continue; // no studies
      }
      for (const st of studies.filter((e) => e.isDirectory())) {
        try {
          for (const e of await fs.promises.readdir(path.join(root, st.name), { withFileTypes: true }))
            if (e.isDirectory()) dirs.add(path.join(root, st.name, e.name));
        } catch {
          /* removed meanwhile */
        }
      }
    }
    for (const d of this.known) dirs.add(d);
    for (const d of this.live.keys()) dirs.add(d);
    return [...dirs];
  }

  /** Cheap signature of a run: its files' mtimes and sizes plus the live state (4 stats). */
  private async sigOf(dir: string): Promise<string> {
    const live = this.live.get(dir);
    const sts = await Promise.all(RUN_FILES.map((f) => stat(path.join(dir, f))));
    // A killed owner changes no file: whether run.lock's pid still runs is part of the signature.
    const owner = sts[RUN_FILES.indexOf(RUN_LOCK_FILE)] ? ownerState(await readLockAsync(dir)) : '';
    return (
      sts.map((s) => (s ? `${s.mtimeMs}:${s.size}` : '-')).join('|') +
      `|${owner}` +
      `|${live?.state?.status ?? ''}|${live?.lastStep?.step ?? ''}|${live?.lastEpoch?.epoch ?? ''}`
    );
  }

  /** The signature of the whole list: every candidate folder and its files. */
  private async listSig(dirs: string[]): Promise<string> {
    return (await Promise.all([...dirs].sort().map(async (d) => `${d}:${await this.sigOf(d)}`))).join('\n');
  }

  /**
   * The safety net under the file watchers: every POLL_MS, compare the folders' signatures with
   * those the current list was read from, and reload when they differ. Watcher events can be
   * missing (measured in code-server: the files a `met train` in a terminal wrote into a run
   * folder it had just created raised no event, only the folder did), and folders outside the
   * workspace are not watched at all; a runs view that silently stops updating is worse than a
   * few stat calls every few seconds.
   */
  private async poll(): Promise<void> {
    // Nothing loaded, or a reload already pending: the next runs() reads everything afresh.
    if (this.polling || !this.loaded || this.loadedSig === undefined) return;
    this.polling = true;
    const current = this.loaded;
    try {
      const sig = await this.listSig(await this.candidates());
      if (this.loaded === current && sig !== this.loadedSig) this.schedule(0);
    } finally {
      this.polling = false;
    }
  }

  /** One run, re-read if its files or live state changed since the last read. */
  async info(dir: string): Promise<RunInfo | null> {
    dir = norm(dir);
    const live = this.live.get(dir);
    const sig = await this.sigOf(dir);
    const hit = this.cache.get(dir);
    // File recency decides 'starting' / 'running' for other processes' runs, so age matters too.
    if (
      hit &&
      hit.sig === sig &&
      !((hit.info?.status === 'running' || hit.info?.status === 'starting') && !live?.state)
    )
      return hit.info;
    const info = await readRun(dir, live);
    this.cache.set(dir, { sig, info });
    return info;
  }

  private async load(): Promise<RunInfo[]> {
    const dirs = await this.candidates();
    // Taken before reading: a change during the read makes the next poll reload once more.
    this.loadedSig = await this.listSig(dirs);
    // One unreadable run folder (half-written by another process, permissions) hides only itself.
    const infos = (await Promise.all(dirs.map((d) => this.info(d).catch(() => null)))).filter((x): x is RunInfo => !!x);
    // Forget remembered folders that are gone.
    for (const d of [...this.known]) if (!infos.some((r) => r.dir === d) && !(await stat(d))) this.known.delete(d);
    infos.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || b.name.localeCompare(a.name));
    return infos;
  }

  /**
   * The folder of the one run with this name (a panel's title names its run): undefined when no
   * run or several have it. Serializers use it when a reload came before the webview's state was
   * persisted (seen in code-server right after opening a panel).
   */
  async dirOfName(name: string): Promise<string | undefined> {
    const same = (await this.runs()).filter((r) => r.name === name);
    return same.length === 1 ? same[0].dir : undefined;
  }

  /** Runs started from this config file (recorded as configFile in the run's config.json), newest first. */
  async runsOfConfig(configFile: string): Promise<RunInfo[]> {
    const k = norm(configFile);
    return (await this.runs()).filter((r) => r.config.configFile && norm(r.config.configFile) === k);
  }

  forget(dir: string): void {
    const k = norm(dir);
    this.cache.delete(k);
    this.live.delete(k);
    if (this.known.delete(k)) void this.memento.update(KNOWN_KEY, [...this.known]);
    this.schedule(0);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.disposables.forEach((d) => d.dispose());
  }
}

let index: RunIndex | undefined;

/** The extension's one RunIndex (created on first use, disposed with the extension). */
export function getRunIndex(context: vscode.ExtensionContext): RunIndex {
  if (!index) {
    const created = new RunIndex(context.workspaceState);
    index = created;
    context.subscriptions.push(created, { dispose: () => (index = index === created ? undefined : index) });
  }
  return index;
}
