// Ctrl-C and friends for the commands that train (`met train`, `met ablate`): SIGINT (Ctrl-C),
// SIGTERM (kill, a service manager) and SIGHUP (the terminal closed) all ask the training to
// stop after its current step with a checkpoint, so that it can be resumed; the second signal
// quits at once (exit 130).

/** While installed: `reason()` is why to stop (null: go on), polled between steps. */
export interface StopSignals {
  reason(): string | null;
  dispose(): void;
}

export function stopOnSignals(notice: (sig: string) => string): StopSignals {
  let stopReason: string | null = null;
  // SIGHUP means the terminal is gone: writing progress to it then fails (EIO, EPIPE) as an
  // 'error' event, which must not end the run before its checkpoint.
  const quiet = () => undefined;
  const onSignal = (sig: string) => {
    if (sig === 'SIGHUP') for (const s of [process.stdout, process.stderr]) s.on('error', quiet);
    if (stopReason) process.exit(130);
    stopReason = `${sig} received`;
    console.error(`\n${notice(sig)}`);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, () => onSignal(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  return {
    reason: () => stopReason,
    dispose: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}
