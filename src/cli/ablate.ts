// `met ablate`: the paper's ablations on one folder, backbone and split, as one study folder of
// ordinary runs (engine/study/*), and their comparison table.

import * as path from 'node:path';
import { findConfigFile } from '../app/configFile';
import { resolveSettings } from '../app/settings';
import { runStudy, studyJson, type StudyProgress } from '../engine/study/ablate';
import { DEFAULT_BUDGETS, formatTable } from '../engine/study/compare';
import { BUILTIN_VARIANTS, DEFAULT_VARIANTS, defaultStudyDir, studyVariants } from '../engine/study/study';
import { UserError } from '../engine/tensor';
import { type FlagSpec, parseArgs, usage } from './args';
import { stopOnSignals } from './signals';
import { SETTING_FLAGS, settingsOfFlags } from './train';

const { variant: _variant, out: _out, ...BASE_FLAGS } = SETTING_FLAGS;

export const ABLATE_FLAGS: Record<string, FlagSpec> = {
  config: {
    kind: 'string',
    help: 'met.config.json with the shared settings (default ./met.config.json when present; flags override it)',
  },
  variants: {
    kind: 'string',
    help: `comma-separated runs of the study, each a variant (${DEFAULT_VARIANTS.join(', ')}; default all of them) optionally followed by :key=value settings, e.g. met:grForm=ratio:lambda=0.1`,
  },
  lambdas: { kind: 'numbers', help: 'also MET with each of these graph-regularization weights' },
  ranks: { kind: 'ints', help: 'also MET with each of these E-adapter ranks' },
  branches: { kind: 'string', help: 'also MET with each of these exit branches (comma-separated: mlp,sl-vit,…)' },
  'exit-sets': {
    kind: 'string',
    help: 'also MET with each of these exit placements (semicolon-separated: "6,9,12;10,11,12")',
  },
  copycat: { kind: 'numbers', help: 'also MET with copycat distillation at each of these weights' },
  budgets: {
    kind: 'numbers',
    help: `budgets of the dynamic-curve columns, as fractions of the costliest last exit (default ${DEFAULT_BUDGETS.join(',')})`,
  },
  out: {
    kind: 'string',
    help: 'study folder (default .met/studies/ablate-<hash of the shared settings>: the same command continues the same study)',
  },
  json: {
    kind: 'bool',
    help: 'print {"study", "runs": [{"variant", "run", "exits": [{"layer", "accuracy", "gflops"}], …}], "table"} at the end',
  },
  progress: {
    kind: 'string',
    choices: ['text', 'json'],
    help: 'progress on stderr as text (default) or on stdout as JSON lines',
  },
  ...BASE_FLAGS,
  help: { kind: 'bool', help: 'show this help' },
};

/** `met:exits=6,9,12,no_gr` → ['met:exits=6,9,12', 'no_gr']: a comma starts an item only before a variant name. */
export function splitVariants(s: string): string[] {
  const out: string[] = [];
  for (const part of s.split(',').map((x) => x.trim())) {
    if (!part) continue;
    const head = part.split(':')[0];
    if (out.length && !(head in BUILTIN_VARIANTS)) out[out.length - 1] += `,${part}`;
    else out.push(part);
  }
  return out;
}

function describe(p: Extract<StudyProgress, { type: 'run' }>): string {
  const at = `[${p.index}/${p.total}] ${p.variant}`;
  switch (p.state) {
    case 'done':
      return `${at}: finished earlier, kept (${p.run})`;
    case 'resumable':
      return `${at}: resuming from its checkpoint (${p.run})`;
    case 'new':
      return `${at}: training (${p.run})`;
    case 'finished':
      return `${at}: done`;
    case 'stopped':
      return `${at}: stopped (${p.message})`;
    case 'failed':
      return `${at}: FAILED: ${p.message}`;
  }
}

export async function ablateCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ABLATE_FLAGS, 'ablate');
  if (a.help) {
    const names = Object.entries(BUILTIN_VARIANTS).map(([k, v]) => `  ${k.padEnd(13)} ${v.help}`);
    console.log(
      [
        usage('ablate', '--data DIR --weights FILE [--variants met,no_gr,…] [--out STUDY] [options]', ABLATE_FLAGS),
        '',
        'variants:',
        ...names,
      ].join('\n'),
    );
    return 0;
  }
  if (a._.length) throw new UserError(`met ablate: unexpected argument '${a._[0]}'`);
  const configFile = findConfigFile(a.config as string | undefined, ['.']);
  const { config: base, notes } = resolveSettings({
    configFile,
    layers: [{ where: 'command line', values: settingsOfFlags(a) }],
    workspaceRoot: path.resolve('.'),
  });
  for (const n of notes) console.error(n);
  delete (base as { out?: string }).out;
  const exitSets = a['exit-sets']
    ? (a['exit-sets'] as string).split(';').map((s) =>
        s.split(',').map((x) => {
          const n = Number(x);
          if (!Number.isInteger(n) || n < 1)
            throw new UserError(`met ablate: --exit-sets: '${x}' is not a layer number`);
          return n;
        }),
      )
    : undefined;
  const variants = studyVariants({
    variants: a.variants ? splitVariants(a.variants as string) : undefined,
    lambdas: a.lambdas as number[] | undefined,
    ranks: a.ranks as number[] | undefined,
    branches: a.branches ? (a.branches as string).split(',').map((s) => s.trim()) : undefined,
    exitSets,
    copycat: a.copycat as number[] | undefined,
  });
  const budgets = a.budgets as number[] | undefined;
  if (budgets?.some((b) => !(b > 0 && b <= 1)))
    throw new UserError("met ablate: --budgets are fractions of the last exit's GFLOPs, in (0, 1]");
  const dir = path.resolve((a.out as string | undefined) ?? defaultStudyDir('.', base));
  const json = a.progress === 'json';
  console.error(`study ${dir}: ${variants.map((v) => v.name).join(', ')}`);

  const signals = stopOnSignals(
    (sig) => `${sig}: the current run saves a checkpoint after this step; the same command continues the study`,
  );
  let lastPrint = 0;
  try {
    const r = await runStudy(
      dir,
      base,
      variants,
      {
        log: (m) => {
          if (!json) console.error(`  ${m}`);
        },
        shouldStop: signals.reason,
        onProgress: (p) => {
          if (json) return void console.log(JSON.stringify(p));
          if (p.type === 'run') return void console.error(describe(p));
          const e = p.event;
          if (e.type === 'step' && (Date.now() - lastPrint > 5000 || e.step === e.totalSteps)) {
            lastPrint = Date.now();
            console.error(
              `  ${p.variant}: epoch ${e.epoch} step ${e.step}/${e.totalSteps}  loss ${e.loss.toFixed(4)}  ${e.imgPerSec.toFixed(1)} img/s`,
            );
          } else if (e.type === 'epoch')
            console.error(
              `  ${p.variant}: epoch ${e.epoch} (${e.seconds.toFixed(1)} s), val ${(e.valAccPerExit ?? e.valMaePerExit ?? []).map((x) => (e.valMaePerExit ? x.toPrecision(3) : (100 * x).toFixed(1))).join(' / ')}`,
            );
        },
      },
      budgets,
    );
    // JSON progress ends with the result as one more line, so stdout stays JSON lines.
    if (json) console.log(JSON.stringify({ type: 'result', ...studyJson(r) }));
    else if (a.json) console.log(JSON.stringify(studyJson(r)));
    else if (r.table)
      console.log(`\n${formatTable(r.table)}\n\nstudy folder ${r.study} (comparison.csv, comparison.json)`);
    if (r.stopped) {
      console.error(`stopped: ${r.stopped}. Run the same command again to continue the study.`);
      return 130;
    }
    const failed = r.runs.filter((x) => x.error);
    if (failed.length) {
      console.error(`${failed.length} run(s) failed: ${failed.map((x) => x.variant.name).join(', ')}`);
      return 1;
    }
    return 0;
  } finally {
    signals.dispose();
  }
}
