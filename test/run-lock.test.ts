// A run folder has one owner (issue 11, finding 2): run.lock, taken with O_EXCL, names the
// owner's pid, host and start time; it is broken only when stale (this host, pid gone); a lock
// from another host never is. Plus the temporaries killed runs leave (finding 7) and --overwrite
// moving the old run aside. The CLI scenarios with real processes are in cli-run-lock.test.ts.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  acquireRunLock,
  assertUnlocked,
  claimNewRunDir,
  claimRunDir,
  pidAlive,
  removeStaleTemps,
} from '../src/engine/run/lock';
import { readLock, RUN_FILE, RUN_LOCK_FILE, type RunLock } from '../src/engine/run/runFolder';
import { UserError } from '../src/engine/tensor';

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'met-lock-'));
  process.on('exit', () => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A pid that was alive and is gone now. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(r.stdout);
  assert.ok(pid > 0 && !pidAlive(pid));
  return pid;
}

/** A live process other than this one, killed at the end of the test. */
function liveChild(t: { after: (f: () => void) => void }): number {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.after(() => c.kill('SIGKILL'));
  assert.ok(c.pid && pidAlive(c.pid));
  return c.pid;
}

function writeLock(dir: string, l: Partial<RunLock>): void {
  const full: RunLock = { pid: 1, host: os.hostname(), since: '2026-01-01T00:00:00.000Z', command: 'met train', ...l };
  fs.writeFileSync(path.join(dir, RUN_LOCK_FILE), JSON.stringify(full));
}

function lockedBy(re: RegExp) {
  return (e: unknown) => e instanceof UserError && e.code === 'run-locked' && re.test(e.message);
}

test('run.lock names its owner (pid, host, since); release removes it; readLock is null without one', () => {
  const d = tmpDir();
  assert.equal(readLock(d), null);
  const held = acquireRunLock(d, 'met train');
  const l = readLock(d);
  assert.deepEqual(l, held.lock);
  assert.equal(l?.pid, process.pid);
  assert.equal(l?.host, os.hostname());
  assert.ok(!Number.isNaN(Date.parse(l!.since)));
  // This process holds it: a second taker in the same process is refused too.
  assert.throws(() => acquireRunLock(d, 'met eval'), lockedBy(new RegExp(`pid ${process.pid}`)));
  held.release();
  held.release();
  assert.equal(readLock(d), null);
});

test('a lock held by a live process is refused, naming pid, host and start time; assertUnlocked too', (t) => {
  const d = tmpDir();
  const pid = liveChild(t);
  writeLock(d, { pid, since: '2026-12-07T10:00:00.000Z' });
  const owner = new RegExp(`met train \\(pid ${pid} on ${os.hostname()}, since 2026-12-07T10:00:00.000Z\\)`);
  assert.throws(() => acquireRunLock(d, 'met train'), lockedBy(owner));
  assert.throws(() => assertUnlocked(d, 'met eval'), lockedBy(owner));
  assert.equal(readLock(d)?.pid, pid, 'the live lock is left alone');
});

test('a stale lock (this host, pid gone) is broken; a lock from another host never is', () => {
  const d = tmpDir();
  writeLock(d, { pid: deadPid() });
  assert.doesNotThrow(() => assertUnlocked(d, 'met eval'));
  const held = acquireRunLock(d, 'met train');
  assert.equal(readLock(d)?.pid, process.pid);
  held.release();

  writeLock(d, { pid: deadPid(), host: 'some-other-host.example' });
  assert.throws(
    () => acquireRunLock(d, 'met train'),
    lockedBy(
      new RegExp(`another machine.*remove ${path.join(d, RUN_LOCK_FILE).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    ),
  );
  assert.equal(readLock(d)?.host, 'some-other-host.example');
});

test('an unreadable lock counts as held while fresh, and as stale once old', () => {
  const d = tmpDir();
  const f = path.join(d, RUN_LOCK_FILE);
  fs.writeFileSync(f, '');
  assert.equal(readLock(d)?.pid, 0);
  assert.throws(() => acquireRunLock(d, 'met train'), lockedBy(/unreadable run\.lock/));
  const old = new Date(Date.now() - 120_000);
  fs.utimesSync(f, old, old);
  acquireRunLock(d, 'met train').release();
});

test('temporaries of killed runs (<file>.tmp-<pid>-<n>) are removed when their pid is gone, kept when alive', (t) => {
  const d = tmpDir();
  const dead = deadPid();
  const live = liveChild(t);
  const names = [
    `checkpoint.safetensors.tmp-${dead}-3`,
    `checkpoint.safetensors.tmp-${dead}`,
    `metrics.jsonl.tmp-${live}-1`,
    `checkpoint.safetensors.tmp-${process.pid}-1`,
    'checkpoint.safetensors',
  ];
  for (const n of names) fs.writeFileSync(path.join(d, n), 'x');
  const logs: string[] = [];
  claimRunDir(d, 'met train', (m) => logs.push(m)).release();
  assert.deepEqual(fs.readdirSync(d).sort(), names.slice(2).sort());
  assert.match(logs.join('\n'), new RegExp(`removed 2 temporary files.*tmp-${dead}`));
  assert.deepEqual(removeStaleTemps(d), []);
});

test('a new run in a folder that holds a run is refused (run-exists); --overwrite moves the old run aside', () => {
  const root = tmpDir();
  const d = path.join(root, 'run');
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, RUN_FILE.metrics), '{"old":1}\n');
  fs.writeFileSync(path.join(d, RUN_FILE.config), '{}');
  assert.throws(
    () => claimNewRunDir(d, 'met train'),
    (e: unknown) => e instanceof UserError && e.code === 'run-exists' && /--resume.*--overwrite/.test(e.message),
  );
  assert.equal(readLock(d), null, 'the refusal leaves no lock behind');
  const logs: string[] = [];
  const held = claimNewRunDir(d, 'met train', { overwrite: true, log: (m) => logs.push(m) });
  assert.deepEqual(fs.readdirSync(d), [RUN_LOCK_FILE]);
  const aside = fs.readdirSync(root).filter((n) => n.startsWith('run.old-'));
  assert.equal(aside.length, 1);
  assert.equal(fs.readFileSync(path.join(root, aside[0], RUN_FILE.metrics), 'utf8'), '{"old":1}\n');
  assert.ok(!fs.existsSync(path.join(root, aside[0], RUN_LOCK_FILE)));
  assert.match(logs.join('\n'), /moved to .*run\.old-/);
  held.release();
  // An empty folder (or one that does not exist yet) is a new run's.
  const e = path.join(root, 'empty');
  fs.mkdirSync(e);
  claimNewRunDir(e, 'met train').release();
  claimNewRunDir(path.join(root, 'fresh'), 'met train').release();
});

test('--overwrite of a run another process owns is refused, and nothing is moved', (t) => {
  const root = tmpDir();
  const d = path.join(root, 'run');
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, RUN_FILE.config), '{}');
  writeLock(d, { pid: liveChild(t) });
  assert.throws(() => claimNewRunDir(d, 'met train', { overwrite: true }), lockedBy(/in use by met train/));
  assert.deepEqual(fs.readdirSync(root), ['run']);
});

test('of many takers racing for one lock, exactly one wins (O_EXCL)', async () => {
  const d = tmpDir();
  const src = `
    const { acquireRunLock } = require(${JSON.stringify(path.resolve(__dirname, '../src/engine/run/lock.ts'))});
    try { acquireRunLock(process.argv[1], 'racer'); setTimeout(() => process.exit(0), 5000); }
    catch (e) { process.stdout.write(e.code || e.message); process.exit(3); }`;
  const codes = await Promise.all(
    Array.from({ length: 4 }, () => {
      const c = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', src, d], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      return new Promise<[number | null, string]>((res) => c.on('exit', (code) => res([code, out])));
    }),
  );
  assert.equal(codes.filter(([c]) => c === 0).length, 1, JSON.stringify(codes));
  for (const [c, out] of codes) if (c !== 0) assert.equal(out, 'run-locked');
  assert.equal(readLock(d), null, 'the winner released it at exit');
});
