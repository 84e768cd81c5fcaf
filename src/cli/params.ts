// `met params`: MET's parameter accounting and per-exit GFLOPs for a configuration, before
// training it, as a table or JSON. The numbers are the application layer's (app/params.ts), the
// same the engine server answers params/compute with.

import { computeParams, type ParamsReport, PRESETS } from '../app/params';
import { FIELDS, flagOf } from '../engine/settings';
import { UserError } from '../engine/tensor';
import { type FlagSpec, parseArgs, usage } from './args';
import { SETTING_FLAGS } from './train';

// Every `met train` setting is accepted (SETTING_FLAGS: so one command line or config file serves
// both), even those that change no count, such as --lr.

export const PARAMS_FLAGS: Record<string, FlagSpec> = {
  config: {
    kind: 'string',
    help: 'met.config.json to start from (default ./met.config.json when present; flags override it)',
  },
  backbone: { kind: 'string', choices: PRESETS, help: 'a standard ViT at 224 px instead of --weights' },
  classes: { kind: 'int', help: 'classes per exit head (default: the class folders of --data)' },
  ...SETTING_FLAGS,
  json: { kind: 'bool', help: 'print the numbers as JSON' },
  help: { kind: 'bool', help: 'show this help' },
};

const int = (x: number) => x.toLocaleString('en-US');
/** Three decimals, or four significant digits for the small costs of heads. */
const fmtSmall = (g: number) => (g >= 0.1 || g === 0 ? g.toFixed(3) : g.toPrecision(4));
const pct = (x: number | null, d = 2) => (x === null ? 'n/a' : `${(100 * x).toFixed(d)}%`);

function printTable(r: ParamsReport): void {
  const m = r.model;
  console.log(
    `${m.name}: ${m.depth} layers, D = ${m.dim}, ${m.heads} heads, MLP ${m.mlpDim}, ${m.imageSize} px / patch ${m.patchSize}, ${m.channels} channel${m.channels === 1 ? '' : 's'}`,
  );
  console.log(
    `MET: exits after layers ${r.config.exits.join(', ')}; r = ${r.config.rank}; ${r.config.classes} classes; variant ${r.config.variant}; E-adapters ${r.config.eaPositions} (${r.adapters}); branch ${[r.config.branch].flat().join(', ')}\n`,
  );
  const w = Math.max(...r.components.map((c) => c.name.length));
  console.log(`${'component'.padEnd(w)}  ${'shape'.padEnd(26)} ${'count'.padStart(5)} ${'params'.padStart(12)}`);
  for (const c of r.components)
    console.log(
      `${c.name.padEnd(w)}  ${c.shape.padEnd(26)} ${String(c.count).padStart(5)} ${int(c.params).padStart(12)}${c.trainable ? '' : '  (frozen)'}`,
    );
  console.log(
    `\ntrainable ${int(r.trainable)} (${r.trainable_percent.toFixed(3)}% of the backbone's ${int(r.backbone)}); MET adapters ${int(r.met_adapters)}, ${r.branches.every((b) => b.type === 'linear') ? 'heads' : 'exit branches'} ${int(r.heads)}`,
  );
  console.log(
    `independent adapters (one per exit token per location, Σk = ${r.sum_k}): ${int(r.independent_adapters)}`,
  );
  console.log(`reduction ${pct(r.reduction)} exact, ${pct(r.reduction_limit)} in the D ≫ r limit (1 - 1/Σk)`);
  console.log(
    `stored in trainable.safetensors: ${int(r.stored_trainable)} values (stacks over all ${2 * m.depth} adapter slots)\n`,
  );
  console.log('exit  layer  branch            params  GFLOPs  (segment, branch)');
  for (const e of r.exits) {
    const b = r.branches[e.exit - 1];
    const widths = Object.entries(b.widths)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(
      `${String(e.exit).padStart(4)}  ${String(e.layer).padStart(5)}  ${e.branch.padEnd(12)}  ${int(b.params).padStart(10)}  ${e.gflops.toFixed(3).padStart(6)}  (${e.segment_gflops.toFixed(3)}, ${fmtSmall(e.branch_gflops)})  ${widths}`,
    );
  }
  console.log('\nGFLOPs: fvcore convention, 1 multiply-add = 1 FLOP, matrix products only. Cumulative to each');
  console.log('exit, its branch included; a branch that reads the patch tokens (sl-vit, conv-*) at the last');
  console.log('exit has that layer computed for every token, not only for the exit token.');
}

export async function paramsCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, PARAMS_FLAGS, 'params');
  if (a.help) {
    console.log(
      usage('params', '[--config FILE] (--backbone NAME | --weights FILE) --classes C [options]', PARAMS_FLAGS),
    );
    return 0;
  }
  if (a._.length) throw new UserError(`met params: unexpected argument '${a._[0]}'`);
  const fromFlags: Record<string, unknown> = {};
  for (const f of FIELDS) if (a[flagOf(f)] !== undefined) fromFlags[f.key] = a[flagOf(f)];
  const r = await computeParams({
    config: a.config as string | undefined,
    settings: fromFlags,
    backbone: a.backbone as string | undefined,
    classes: a.classes as number | undefined,
  });
  if (a.json) console.log(JSON.stringify(r));
  else printTable(r);
  return 0;
}
