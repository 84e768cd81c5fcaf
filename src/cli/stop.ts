// `met stop --run RUN`: asks the training that owns a run folder to stop after its current step
// with a checkpoint, wherever it was started (a terminal, a VS Code window, a window since
// closed): it writes the folder's stop.request, which the trainer reads between steps
// (engine/run/status.ts), and waits until the owner has let go of the folder.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeLock, heldByTraining, ownerState } from '../engine/run/lock';
import { readLock, readRunStatus, requestStop } from '../engine/run/runFolder';
import { UserError } from '../engine/tensor';
import { type FlagSpec, parseArgs, usage } from './args';

export const STOP_FLAGS: Record<string, FlagSpec> = {
  run: { kind: 'string', help: 'run folder of the training to stop' },
  reason: { kind: 'string', help: 'why (recorded in status.json and the training log; default "met stop")' },
  wait: { kind: 'int', help: 'seconds to wait for the training to stop (default 120; 0: do not wait)' },
  help: { kind: 'bool', help: 'show this help' },
};

export async function stopCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, STOP_FLAGS, 'stop');
  if (a.help) {
    console.log(usage('stop', '--run RUN [--wait SEC]', STOP_FLAGS));
    return 0;
  }
  if (!a.run) throw new UserError('met stop: --run RUN is required');
  if (a._.length) throw new UserError(`met stop: unexpected argument '${a._[0]}'`);
  const dir = path.resolve(a.run as string);
  if (!fs.existsSync(dir)) throw new UserError(`met stop: ${dir}: no such run folder`);
  const lock = readLock(dir);
  if (!heldByTraining(lock)) {
    const owner = ownerState(lock);
    const phase = readRunStatus(dir)?.phase;
    console.error(
      `${dir}: no training owns it${lock && owner === 'gone' ? ` (its lock was left by ${describeLock(lock)}, which no longer runs)` : lock ? ` (${describeLock(lock)} holds it)` : ''}${phase ? `; its last phase: ${phase}` : ''}`,
    );
    return 1;
  }
  requestStop(dir, {
    reason: (a.reason as string | undefined) ?? 'met stop',
    by: 'met stop',
  });
  console.error(`asked ${describeLock(lock)} to stop after its current step with a checkpoint`);
  const waitS = (a.wait as number | undefined) ?? 120;
  const t0 = Date.now();
  while (waitS > 0) {
    const now = readLock(dir);
    if (!now || now.pid !== lock.pid || ownerState(now) === 'gone') {
      const s = readRunStatus(dir);
      console.error(
        `stopped${s?.phase ? ` (${s.phase}${s.stopped ? `: ${s.stopped}` : ''})` : ''}; continue with: met train --resume ${dir}`,
      );
      return 0;
    }
    if (Date.now() - t0 > waitS * 1000) {
      console.error(`${dir}: still training after ${waitS} s (a long step, or a stuck process: pid ${lock.pid})`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return 0;
}
