// One table describes every setting of a run: it validates met.config.json (errors name the
// field), maps `met train` flags onto config keys, and generates the committed JSON Schema
// (schemas/met.config.schema.json) that the editor uses for completion and validation.

import { BRANCH_TYPES } from '../model/branches';
import { UserError } from '../tensor';
import { TRAIN_DEFAULTS, type TrainConfig } from './config';

/** enumList: one of `choices`, or a list of them (on the command line: comma-separated). */
type Kind = 'string' | 'path' | 'int' | 'number' | 'bool' | 'enum' | 'enumList' | 'ints' | 'numbers';

export interface Field {
  key: keyof TrainConfig;
  kind: Kind;
  help: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** Exact array length, for tuples like split. */
  length?: number;
  /** CLI flag (default: the key in kebab-case). */
  flag?: string;
  required?: boolean;
}

export const FIELDS: Field[] = [
  {
    key: 'data',
    kind: 'path',
    required: true,
    help: 'Image folder: one sub-folder per class, or train/ val/ test/ folders holding class sub-folders.',
  },
  {
    key: 'weights',
    kind: 'path',
    required: true,
    help: 'Backbone checkpoint: .safetensors, PyTorch .pth/.pt/.bin, or Google .npz.',
  },
  {
    key: 'layout',
    kind: 'enum',
    choices: ['auto', 'timm', 'hf', 'torchvision', 'vit-pytorch', 'npz'],
    help: 'Key layout of the checkpoint (auto detects it from the tensor names).',
  },
  {
    key: 'imageSize',
    kind: 'int',
    min: 1,
    help: 'Input size; position embeddings are resampled bicubically if it differs from the checkpoint.',
  },
  {
    key: 'channels',
    kind: 'int',
    min: 1,
    max: 3,
    help: 'Image channels the backbone expects (1 or 3); default from the checkpoint.',
  },
  { key: 'mean', kind: 'numbers', help: 'Normalisation mean per channel on [0,1] pixels (timm pretrained_cfg mean).' },
  { key: 'std', kind: 'numbers', help: 'Normalisation std per channel (timm pretrained_cfg std).' },
  { key: 'heads', kind: 'int', min: 1, help: 'Attention heads, when the checkpoint layout does not imply them.' },
  {
    key: 'backboneAct',
    kind: 'enum',
    choices: ['gelu', 'gelu_tanh', 'relu'],
    flag: 'act',
    help: 'MLP activation of the backbone (default gelu).',
  },
  {
    key: 'exits',
    kind: 'ints',
    min: 1,
    help: 'Layers (1-based) followed by an exit; default the last 7 layers, or every layer of a shallower backbone.',
  },
  { key: 'rank', kind: 'int', min: 1, help: 'E-adapter bottleneck r (shared W_d: D x r, W_u: r x D).' },
  { key: 'lambda', kind: 'number', min: 0, help: 'Weight of the graph regularization on the early exits.' },
  {
    key: 'variant',
    kind: 'enum',
    choices: ['met', 'no_gr', 'shared_cls', 'linear_probe'],
    help: 'met; no_gr (no graph regularization); shared_cls (one diagonal shared by all exits); linear_probe (frozen backbone, a head per exit layer).',
  },
  {
    key: 'eaPositions',
    kind: 'enum',
    choices: ['both', 'mha', 'mlp'],
    help: 'E-adapters before MHA and MLP (MET), before MHA only (MET_MG) or before the MLP only (MET_FG).',
  },
  {
    key: 'featurePath',
    kind: 'enum',
    choices: ['chain', 'deepest', 'shared'],
    help: 'How patch tokens pass an E-adapter (spec 1.4).',
  },
  { key: 'adapterAct', kind: 'enum', choices: ['relu', 'gelu'], help: 'E-adapter non-linearity.' },
  {
    key: 'actPosition',
    kind: 'enum',
    choices: ['after_down', 'after_diag'],
    help: 'Where the non-linearity sits in the sub-adapter.',
  },
  {
    key: 'eaPosition',
    kind: 'enum',
    choices: ['post_ln', 'pre_ln'],
    help: 'Adapter on the LayerNorm output (ARC) or on the residual stream before it.',
  },
  {
    key: 'attnMask',
    kind: 'enum',
    choices: ['none', 'cls_isolated', 'fully_isolated'],
    help: 'Attention among exit tokens (spec 1.3).',
  },
  {
    key: 'exitKeyBias',
    kind: 'enum',
    choices: ['log_k', 'none'],
    help: '-log k on the k exit-token keys keeps the untrained model equal to the backbone.',
  },
  {
    key: 'grForm',
    kind: 'enum',
    choices: ['diff', 'ratio'],
    help: 'Graph regularization: intra minus inter, or intra / inter.',
  },
  { key: 'grSquared', kind: 'bool', help: 'Squared Euclidean distances in the graph regularization.' },
  {
    key: 'simClamp',
    kind: 'enum',
    choices: ['none', 'relu', 'affine'],
    help: 'Cosine similarities as they are, max(0, cos), or (1 + cos) / 2.',
  },
  { key: 'grExcludeSelf', kind: 'bool', help: 'Leave self-pairs out of the intra-class graph.' },
  {
    key: 'grNormalize',
    kind: 'bool',
    help: 'Divide distances by the width D (puts lambda on the scale of the cross-entropy).',
  },
  { key: 'headInit', kind: 'enum', choices: ['trunc_normal', 'zeros'], help: 'Exit head initialisation.' },
  {
    key: 'branch',
    kind: 'enumList',
    choices: BRANCH_TYPES,
    help: "Exit branch: linear (MET's head on the exit token after the final LayerNorm), mlp (a hidden layer on it), sl-vit (one transformer encoder layer over the exit token and the patch tokens, then LayerNorm and head), conv-ignore, conv-add, conv-project (a 3x3 conv over the patch grid with the class token ignored, added to every patch, or projected in as a channel). One type for every exit, or a list with one per exit (on the command line: comma-separated).",
  },
  { key: 'branchHidden', kind: 'int', min: 0, help: 'mlp branch: hidden width (0: the backbone width D).' },
  { key: 'branchChannels', kind: 'int', min: 0, help: 'conv branches: output channels of the 3x3 conv (0: D / 4).' },
  { key: 'branchHeads', kind: 'int', min: 0, help: "sl-vit branch: attention heads, dividing D (0: the backbone's)." },
  {
    key: 'branchMlpRatio',
    kind: 'number',
    min: 0,
    help: "sl-vit branch: MLP width as a multiple of D (0: the backbone's).",
  },
  {
    key: 'distill',
    kind: 'number',
    min: 0,
    help: "Copycat fine-tuning: weight of the distillation of the final exit's softened outputs into every early exit, T^2 KL(softmax(z_K/T) || softmax(z_j/T)) with the final exit's logits detached, added to MET's losses (0: off; with lambda 0: without graph regularization).",
  },
  {
    key: 'distillTemperature',
    kind: 'number',
    min: 0,
    help: 'Copycat fine-tuning: softmax temperature T (> 0) of the final exit and the early exits (default 2).',
  },
  {
    key: 'task',
    kind: 'enum',
    choices: ['classification', 'regression'],
    help: 'classification (class folders) or regression: every exit predicts a number; the folder holds images and a targets file mapping each image to its value (see targets).',
  },
  {
    key: 'targets',
    kind: 'path',
    help: 'Regression: CSV (file,value per line, optional header) or JSON ({"file": value}) with image paths relative to the data folder. Default: targets.csv, targets.json, labels.csv, labels.json, values.csv or values.json at the data folder\'s root. Missing or non-numeric values are skipped and listed in report.json.',
  },
  {
    key: 'regLoss',
    kind: 'enum',
    choices: ['mse', 'l1'],
    help: 'Regression: per-exit loss, mean squared error or mean absolute error (graph regularization is off for regression).',
  },
  {
    key: 'standardize',
    kind: 'bool',
    help: "Regression: train on (value - mean) / std of the training split's targets; predictions and metrics are mapped back to the targets' units.",
  },
  { key: 'epochs', kind: 'int', min: 1, help: 'Training epochs.' },
  { key: 'batch', kind: 'int', min: 1, help: 'Images per step.' },
  { key: 'lr', kind: 'number', min: 0, help: 'Peak learning rate (AdamW).' },
  { key: 'minLr', kind: 'number', min: 0, help: 'Learning rate at the end of the cosine decay.' },
  { key: 'weightDecay', kind: 'number', min: 0, help: 'AdamW weight decay (projections and head matrices).' },
  { key: 'warmupEpochs', kind: 'number', min: 0, help: 'Linear warm-up length in epochs.' },
  {
    key: 'seed',
    kind: 'int',
    min: 0,
    help: 'Seed of the split, the initialisation, the batch order and augmentation.',
  },
  {
    key: 'split',
    kind: 'numbers',
    length: 3,
    min: 0,
    max: 100,
    help: 'Train, val and test percentages when the folder has no split folders.',
  },
  {
    key: 'resize',
    kind: 'enum',
    choices: ['direct', 'resize-center-crop'],
    help: 'Resize straight to the input size (VTAB) or resize and centre-crop (timm eval).',
  },
  { key: 'augment', kind: 'bool', help: 'Random resized crop and horizontal flip for training images.' },
  {
    key: 'dynamicExits',
    kind: 'ints',
    min: 1,
    help: 'Exits (1-based exit numbers, e.g. 1,4,7) used by budgeted inference; default all.',
  },
  {
    key: 'device',
    kind: 'enum',
    choices: ['cpu', 'webgpu', 'cuda', 'auto'],
    help: 'Execution provider; auto tries CUDA, then WebGPU, then the CPU.',
  },
  { key: 'threads', kind: 'int', min: 1, help: 'CPU threads (default: one per core).' },
  { key: 'out', kind: 'path', help: 'Run folder (default .met/runs/<time>-<variant>).' },
];

export const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
export const flagOf = (f: Field) => f.flag ?? kebab(f.key);

function check(f: Field, v: unknown, where: string): unknown {
  const bad = (what: string) => new UserError(`${where}: field '${f.key}' must be ${what}, got ${JSON.stringify(v)}`);
  const inRange = (n: number) => (f.min === undefined || n >= f.min) && (f.max === undefined || n <= f.max);
  const range = f.min !== undefined || f.max !== undefined ? ` in [${f.min ?? '-inf'}, ${f.max ?? 'inf'}]` : '';
  switch (f.kind) {
    case 'string':
    case 'path':
      if (typeof v !== 'string' || !v) throw bad('a non-empty string');
      return v;
    case 'enum':
      if (typeof v !== 'string' || !f.choices!.includes(v))
        throw bad(`one of ${f.choices!.map((c) => `"${c}"`).join(', ')}`);
      return v;
    case 'enumList': {
      // "a,b" (a flag) is the list [a, b]; a single name stays a string.
      const list = typeof v === 'string' && v.includes(',') ? v.split(',').map((x) => x.trim()) : v;
      const ok = (x: unknown) => typeof x === 'string' && f.choices!.includes(x);
      if (Array.isArray(list) ? list.length > 0 && list.every(ok) : ok(list)) return list;
      throw bad(`one of ${f.choices!.map((c) => `"${c}"`).join(', ')}, or a list of them`);
    }
    case 'bool':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || !inRange(v)) throw bad(`an integer${range}`);
      return v;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || !inRange(v)) throw bad(`a number${range}`);
      return v;
    case 'ints':
    case 'numbers': {
      const ok =
        Array.isArray(v) &&
        v.length > 0 &&
        v.every(
          (x) =>
            typeof x === 'number' && Number.isFinite(x) && (f.kind === 'numbers' || Number.isInteger(x)) && inRange(x),
        );
      if (!ok || (f.length !== undefined && (v as unknown[]).length !== f.length))
        throw bad(`${f.length ? `${f.length} ` : 'a list of '}${f.kind === 'ints' ? 'integers' : 'numbers'}${range}`);
      return v;
    }
  }
}

/** Validates a parsed config object (unknown keys and wrong types are errors naming the field). */
export function validateConfig(obj: unknown, where: string): Partial<TrainConfig> {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj))
    throw new UserError(`${where}: the config must be a JSON object`);
  const out: Record<string, unknown> = {};
  const byKey = new Map(FIELDS.map((f) => [f.key as string, f]));
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (k === '$schema') continue;
    const f = byKey.get(k);
    if (!f) {
      const near = FIELDS.map((x) => x.key as string).find(
        (x) => x.toLowerCase() === k.toLowerCase().replace(/[-_]/g, ''),
      );
      throw new UserError(`${where}: unknown field '${k}'${near ? ` (did you mean '${near}'?)` : ''}`);
    }
    out[k] = check(f, v, where);
  }
  if (out.split) {
    const s = out.split as number[];
    if (Math.abs(s[0] + s[1] + s[2] - 100) > 1e-9)
      throw new UserError(`${where}: field 'split' must add up to 100, got ${s.join(' + ')}`);
  }
  return out as Partial<TrainConfig>;
}

/** Defaults, then the config file, then flags; checks required fields. */
export function resolveConfig(file: Partial<TrainConfig>, flags: Partial<TrainConfig>): TrainConfig {
  const c = { ...TRAIN_DEFAULTS, ...file, ...flags } as TrainConfig;
  for (const f of FIELDS)
    if (f.required && c[f.key] === undefined)
      throw new UserError(`'${f.key}' is required (--${flagOf(f)} or "${f.key}" in met.config.json)`);
  validateConfig(c, 'settings');
  return c;
}

/** The JSON Schema of met.config.json (draft-07, what VS Code's JSON language service speaks). */
export function jsonSchema(): Record<string, unknown> {
  const props: Record<string, unknown> = { $schema: { type: 'string' } };
  for (const f of FIELDS) {
    const p: Record<string, unknown> = { description: f.help };
    const def = (TRAIN_DEFAULTS as Record<string, unknown>)[f.key];
    if (def !== undefined) p.default = def;
    switch (f.kind) {
      case 'string':
      case 'path':
        p.type = 'string';
        break;
      case 'enum':
        p.enum = [...f.choices!];
        break;
      case 'enumList':
        p.anyOf = [{ enum: [...f.choices!] }, { type: 'array', items: { enum: [...f.choices!] }, minItems: 1 }];
        break;
      case 'bool':
        p.type = 'boolean';
        break;
      case 'int':
      case 'number':
        p.type = f.kind === 'int' ? 'integer' : 'number';
        if (f.min !== undefined) p.minimum = f.min;
        if (f.max !== undefined) p.maximum = f.max;
        break;
      case 'ints':
      case 'numbers': {
        const item: Record<string, unknown> = { type: f.kind === 'ints' ? 'integer' : 'number' };
        if (f.min !== undefined) item.minimum = f.min;
        if (f.max !== undefined) item.maximum = f.max;
        p.type = 'array';
        p.items = item;
        p.minItems = f.length ?? 1;
        if (f.length) p.maxItems = f.length;
        break;
      }
    }
    props[f.key] = p;
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://met-tools.invalid/met.config.schema.json',
    title: 'MET fine-tuning configuration (met.config.json)',
    type: 'object',
    additionalProperties: false,
    required: FIELDS.filter((f) => f.required).map((f) => f.key),
    properties: props,
  };
}
