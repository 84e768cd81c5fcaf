// `met export --run RUN --out DIR`: the run's segments as self-contained ONNX files, with the
// chosen thresholds, costs, class names and preprocessing in DIR/thresholds.json.

import * as path from 'node:path';
import { exportRun, fmtGflops } from '../engine/export/export';
import { UserError } from '../engine/tensor';
import { type FlagSpec, parseArgs, usage } from './args';

export const EXPORT_FLAGS: Record<string, FlagSpec> = {
  run: { kind: 'string', help: 'run folder (config.json, trainable.safetensors, thresholds.json)' },
  out: { kind: 'string', help: 'output folder (new, empty, or an earlier export)' },
  json: { kind: 'bool', help: 'print the manifest (thresholds.json) instead of a summary' },
  help: { kind: 'bool', help: 'show this help' },
};

export async function exportCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, EXPORT_FLAGS, 'export');
  if (a.help) {
    console.log(usage('export', '--run RUN --out DIR', EXPORT_FLAGS));
    return 0;
  }
  if (!a.run) throw new UserError('met export: --run RUN is required');
  if (!a.out) throw new UserError('met export: --out DIR is required');
  if (a._.length) throw new UserError(`met export: unexpected argument '${a._[0]}'`);
  const m = exportRun(a.run as string, a.out as string, (msg) => console.error(msg));
  if (a.json) {
    console.log(JSON.stringify(m));
    return 0;
  }
  const dir = path.resolve(a.out as string);
  console.log(`exported ${m.segments.length} segment${m.segments.length === 1 ? '' : 's'} to ${dir}`);
  console.log('file               exit  layers  GFLOPs (cum.)  threshold');
  for (const s of m.segments)
    console.log(
      `${s.file.padEnd(18)} ${String(s.exit).padStart(4)}  ${`${s.layers[0]}-${s.layers[1]}`.padStart(6)}  ${fmtGflops(s.cumulativeGflops).padStart(13)}  ${typeof s.threshold === 'number' ? s.threshold.toFixed(6) : s.threshold}`,
    );
  console.log(`thresholds: ${m.chosen.p === null ? m.chosen.source : `p = ${m.chosen.p} (${m.chosen.source})`}`);
  if (m.task === 'regression')
    console.log(
      'regression: segments output `value`; a sample leaves where -|value_j - value_(j-1)| (agreement of consecutive exits) >= the threshold',
    );
  return 0;
}
