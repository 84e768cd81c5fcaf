// The `met` command line. The same bundle is the engine process that the extension forks.

import { ablateCommand } from './cli/ablate';
import { exportCommand } from './cli/export';
import { gpuCommand } from './cli/gpu';
import { paramsCommand } from './cli/params';
import { predictCommand } from './cli/predict';
import { stopCommand } from './cli/stop';
import { evalCommand, trainCommand } from './cli/train';
import { formatError } from './cli/errors';
import { engineCommand } from './server/engine';
import { ENGINE_COMMAND } from './protocol';

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  train: { run: trainCommand, help: 'fine-tune a backbone with MET on an image folder' },
  stop: { run: stopCommand, help: 'stop a training (from any terminal or window) after its step, with a checkpoint' },
  eval: { run: evalCommand, help: 'per-exit accuracy and GFLOPs of a run, and the budgeted-inference curve' },
  predict: {
    run: predictCommand,
    help: 'classify images with a run (every exit, and the exit taken) or a backbone and its own head',
  },
  ablate: {
    run: ablateCommand,
    help: "the paper's ablations (met, no_gr, shared_cls, linear_probe, …) as one study of runs, and their table",
  },
  params: { run: paramsCommand, help: "MET's parameter counts and GFLOPs per exit for a configuration" },
  gpu: {
    run: gpuCommand,
    help: 'which execution providers (CUDA, WebGPU, DirectML, CoreML, CPU) work here, and why not',
  },
  export: { run: exportCommand, help: 'write a run as ONNX segments with its thresholds for budgeted early exit' },
};

function mainUsage(): string {
  const lines = ['usage: met <command> [options]', '', 'commands:'];
  for (const [k, c] of Object.entries(COMMANDS)) lines.push(`  ${k.padEnd(10)} ${c.help}`);
  lines.push('', "Run 'met <command> --help' for a command's options.");
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(mainUsage());
    return cmd ? 0 : 2;
  }
  // Hidden: the extension's engine process (the engine server, src/server/engine.ts), not a command for people.
  if (cmd === ENGINE_COMMAND) return engineCommand(rest);
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`met: unknown command '${cmd}'\n\n${mainUsage()}`);
    return 2;
  }
  return c.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    // One line naming the problem (the file and the reason for a system error); no stack trace.
    console.error(formatError(e));
    process.exitCode = 1;
  },
);
