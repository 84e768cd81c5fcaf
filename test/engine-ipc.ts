// The engine process (`dist/cli.js engine`) spoken to over Node IPC exactly as the extension
// does (src/protocol.ts): fork with 'advanced' serialization, the ready handshake, requests
// answered by id, notifications collected. Shared by the engine-process tests.
// Needs dist/cli.js (npm test builds it first).

import { type ChildProcess, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEMO_CLASSES, writeShapeFolder } from '../src/engine/demo/shapes';
import type { TrainEvent } from '../src/engine/train/trainer';
import {
  isNotification,
  isResponse,
  type NotificationMap,
  type ParamsOf,
  type RequestMethod,
  type ResultOf,
} from '../src/protocol';

export const CLI = path.join(path.resolve(__dirname, '..'), 'dist', 'cli.js');
/** The committed tiny backbone (its head count is in the config.json beside it). */
export const TINY_VIT = path.join(path.resolve(__dirname, '..'), 'assets', 'tiny-vit', 'tiny-vit.safetensors');

/** A temporary folder (removed at exit) holding shapes/: 3 generated classes of `perClass` images. */
export async function shapesWorkspace(
  prefix: string,
  perClass: number,
  seed: number,
): Promise<{ root: string; data: string }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  const data = path.join(root, 'shapes');
  await writeShapeFolder({ out: data, classes: DEMO_CLASSES.slice(0, 3), perClass, seed });
  return { root, data };
}

export class Engine {
  readonly child: ChildProcess;
  readonly ready: Promise<NotificationMap['ready']>;
  readonly events: { runDir: string; event: TrainEvent }[] = [];
  readonly logs: string[] = [];
  stderr = '';
  private id = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  onEvent: (e: TrainEvent) => void = () => undefined;

  constructor(cwd: string) {
    this.child = fork(CLI, ['engine'], {
      cwd,
      execArgv: [],
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.child.stdout!.resume();
    this.ready = new Promise((resolve) => {
      this.child.on('message', (m: unknown) => {
        if (isResponse(m)) {
          const p = this.pending.get(m.id)!;
          this.pending.delete(m.id);
          if ('error' in m)
            p.reject(
              Object.assign(new Error(m.error.message), {
                name: m.error.name,
                code: m.error.code,
                field: m.error.field,
                details: m.error.details,
              }),
            );
          else p.resolve(m.result);
        } else if (isNotification(m)) {
          if (m.method === 'ready') resolve(m.params as NotificationMap['ready']);
          if (m.method === 'log') this.logs.push((m.params as NotificationMap['log']).message);
          if (m.method === 'train/event') {
            const p = m.params as NotificationMap['train/event'];
            this.events.push(p);
            this.onEvent(p.event);
          }
        }
      });
    });
    this.exit = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        for (const p of this.pending.values()) p.reject(new Error(`engine exited (${signal ?? code})`));
        resolve({ code, signal });
      }),
    );
  }

  request<M extends RequestMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, method, params });
    });
  }
}
