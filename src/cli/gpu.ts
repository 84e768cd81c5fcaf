// `met gpu`: every execution provider onnxruntime-node knows, on this machine: whether it works
// (a test session in a child process), what was found or why not and what to do, and which one
// `device: auto` picks here. The same report as the extension's "MET: Check GPU".

import { autoPick, probeProviders, formatDeviceReport } from '../engine/runtime/device';
import { UserError } from '../engine/tensor';
import { type FlagSpec, parseArgs, usage } from './args';

export const GPU_FLAGS: Record<string, FlagSpec> = {
  json: { kind: 'bool', help: 'print {"statuses": [...], "auto": ...}' },
  help: { kind: 'bool', help: 'show this help' },
};

export async function gpuCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, GPU_FLAGS, 'gpu');
  if (a.help) {
    console.log(usage('gpu', '[--json]', GPU_FLAGS));
    return 0;
  }
  if (a._.length) throw new UserError(`met gpu: unexpected argument '${a._[0]}'`);
  const statuses = await probeProviders({ refresh: true });
  if (a.json) console.log(JSON.stringify({ statuses, auto: autoPick(statuses) }, null, 1));
  else console.log(formatDeviceReport(statuses));
  return 0;
}
