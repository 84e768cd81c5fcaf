// The one table of a run's settings: what met.config.json holds and what `met train` flags
// override. Everything else is derived from it: the TrainConfig type and TRAIN_DEFAULTS
// (run/config.ts), the model's part of it (MetSettings, MET_DEFAULTS in model/met.ts,
// metConfigOf), validation (run/schema.ts), the JSON Schema (schemas/met.config.schema.json),
// the CLI flags and `met train --help`, and docs/settings.md. Adding a setting is one entry here.
//
// A leaf of the engine: it imports nothing, so every layer (model, run, the app layer, the
// extension host, the webviews) can read it, and the model's enums are declared here rather than
// in the model code that switches on them.
// Names follow what users know (timm's mean/std; PEFT's rank `r` is `rank`).

// ---- The enums, each written once ----

export const LAYOUTS = ['auto', 'timm', 'hf', 'torchvision', 'vit-pytorch', 'npz'] as const;
/** The backbone's MLP activation (model/config.ts Activation). */
export const BACKBONE_ACTS = ['gelu', 'gelu_tanh', 'relu'] as const;
/** The E-adapters' non-linearity (MetConfig.adapterAct). */
export const ADAPTER_ACTS = ['relu', 'gelu'] as const;
export const VARIANTS = ['met', 'no_gr', 'shared_cls', 'linear_probe'] as const;
export const EA_POSITIONS = ['both', 'mha', 'mlp'] as const;
export const FEATURE_PATHS = ['chain', 'deepest', 'shared'] as const;
export const ACT_POSITIONS = ['after_down', 'after_diag'] as const;
export const EA_POSITION = ['post_ln', 'pre_ln'] as const;
export const ATTN_MASKS = ['none', 'cls_isolated', 'fully_isolated'] as const;
export const EXIT_KEY_BIASES = ['log_k', 'none'] as const;
export const GR_FORMS = ['diff', 'ratio'] as const;
export const SIM_CLAMPS = ['none', 'relu', 'affine'] as const;
export const HEAD_INITS = ['trunc_normal', 'zeros'] as const;
export const TASKS = ['classification', 'regression'] as const;
export const REG_LOSSES = ['mse', 'l1'] as const;
export const RESIZES = ['direct', 'resize-center-crop'] as const;
export const DEVICES = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml', 'auto'] as const;
/** onnxruntime execution providers MET knows, in the order reports list them (runtime/device.ts). */
export const PROVIDERS = ['cuda', 'webgpu', 'dml', 'coreml', 'cpu'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
/** Their names in messages. */
export const PROVIDER_LABELS: Record<ProviderName, string> = {
  cuda: 'CUDA',
  webgpu: 'WebGPU',
  dml: 'DirectML',
  coreml: 'CoreML',
  cpu: 'CPU',
};
/** Exit branch types (model/branches.ts builds each). */
export const BRANCH_TYPES = ['linear', 'mlp', 'sl-vit', 'conv-ignore', 'conv-add', 'conv-project'] as const;
export type BranchType = (typeof BRANCH_TYPES)[number];
/** Copycat distillation's softmax temperature T when the settings name none (model/distill.ts). */
export const DISTILL_DEFAULT_TEMPERATURE = 2;

// ---- The table ----

/** enumList: one of `choices`, or a list of them (on the command line: comma-separated). */
export type Kind = 'string' | 'path' | 'int' | 'number' | 'bool' | 'enum' | 'enumList' | 'ints' | 'numbers';

export interface SettingSpec {
  kind: Kind;
  help: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** Exact array length, for tuples like split. */
  length?: number;
  /** CLI flag (default: the key in kebab-case). */
  flag?: string;
  /** Older flags still accepted (not shown in --help's first column). */
  flagAliases?: readonly string[];
  required?: boolean;
  /** Part of the model's MetConfig (model/met.ts), under the same name. */
  model?: boolean;
  default?: unknown;
}

/** A setting's value type, carried by the table entry only for the type system. */
type Typed<T, O> = O & { readonly __value?: T };

const field =
  <T>() =>
  <const O extends Omit<SettingSpec, 'default'> & { default?: T }>(o: O): Typed<T, O> =>
    o;
const str = field<string>();
const int = field<number>();
const num = field<number>();
const bool = field<boolean>();
const ints = field<number[]>();
const nums = field<number[]>();
const oneOf = <const C extends readonly string[], const O extends Omit<SettingSpec, 'default' | 'choices' | 'kind'>>(
  choices: C,
  o: O & { default?: C[number] },
): Typed<C[number], O & { kind: 'enum'; choices: C }> => ({ ...o, kind: 'enum', choices });

export const SETTINGS = {
  data: str({
    kind: 'path',
    required: true,
    help: 'Image folder: one sub-folder per class, or train/ val/ test/ folders holding class sub-folders.',
  }),
  weights: str({
    kind: 'path',
    required: true,
    help: 'Backbone checkpoint: .safetensors, PyTorch .pth/.pt/.bin, or Google .npz.',
  }),
  layout: oneOf(LAYOUTS, {
    default: 'auto',
    help: 'Key layout of the checkpoint (auto detects it from the tensor names).',
  }),
  imageSize: int({
    kind: 'int',
    min: 1,
    help: 'Input size; position embeddings are resampled bicubically if it differs from the checkpoint.',
  }),
  channels: field<1 | 3>()({
    kind: 'int',
    min: 1,
    max: 3,
    help: 'Image channels the backbone expects (1 or 3); default from the checkpoint.',
  }),
  mean: nums({ kind: 'numbers', help: 'Normalisation mean per channel on [0,1] pixels (timm pretrained_cfg mean).' }),
  std: nums({ kind: 'numbers', help: 'Normalisation std per channel (timm pretrained_cfg std).' }),
  heads: int({
    kind: 'int',
    min: 1,
    help: 'Attention heads, when the checkpoint layout does not imply them (default: a config.json beside the weights, {"config": {"heads": N}} or Hugging Face\'s num_attention_heads, when it has them).',
  }),
  backboneAct: oneOf(BACKBONE_ACTS, {
    flag: 'backbone-act',
    flagAliases: ['act'],
    help: "MLP activation of the backbone (default gelu; not the E-adapters', see adapterAct).",
  }),
  exits: ints({
    kind: 'ints',
    min: 1,
    help: 'Layers (1-based) followed by an exit; default the last 7 layers, or every layer of a shallower backbone.',
  }),
  rank: int({
    kind: 'int',
    min: 1,
    default: 8,
    model: true,
    help: 'E-adapter bottleneck r (shared W_d: D x r, W_u: r x D).',
  }),
  lambda: num({
    kind: 'number',
    min: 0,
    default: 0.001,
    model: true,
    help: 'Weight of the graph regularization on the early exits (default 0.001 with simClamp relu: measured in docs/method.md §2.1; 0.01 with raw cosines cost 14-21 points).',
  }),
  variant: oneOf(VARIANTS, {
    default: 'met',
    model: true,
    help: 'met; no_gr (no graph regularization); shared_cls (one diagonal shared by all exits); linear_probe (frozen backbone, a head per exit layer).',
  }),
  eaPositions: oneOf(EA_POSITIONS, {
    default: 'both',
    model: true,
    help: 'E-adapters before MHA and MLP (MET), before MHA only (MET_MG) or before the MLP only (MET_FG).',
  }),
  featurePath: oneOf(FEATURE_PATHS, {
    default: 'chain',
    model: true,
    help: 'How patch tokens pass an E-adapter (docs/method.md §1.4).',
  }),
  adapterAct: oneOf(ADAPTER_ACTS, {
    default: 'relu',
    model: true,
    help: "E-adapter non-linearity (not the backbone's, see backboneAct).",
  }),
  actPosition: oneOf(ACT_POSITIONS, {
    default: 'after_down',
    model: true,
    help: 'Where the non-linearity sits in the sub-adapter.',
  }),
  eaPosition: oneOf(EA_POSITION, {
    default: 'post_ln',
    model: true,
    help: 'Adapter on the LayerNorm output (ARC) or on the residual stream before it.',
  }),
  attnMask: oneOf(ATTN_MASKS, {
    default: 'none',
    model: true,
    help: 'Attention among exit tokens (docs/method.md §1.3).',
  }),
  exitKeyBias: oneOf(EXIT_KEY_BIASES, {
    default: 'log_k',
    model: true,
    help: '-log k on the k exit-token keys keeps the untrained model equal to the backbone.',
  }),
  grForm: oneOf(GR_FORMS, {
    default: 'diff',
    model: true,
    help: 'Graph regularization: intra minus inter, or intra / inter (ratio needs simClamp relu or affine: with raw cosines the inter term can reach 0 or go negative and the loss diverges).',
  }),
  grSquared: bool({
    kind: 'bool',
    default: true,
    model: true,
    help: 'Squared Euclidean distances in the graph regularization.',
  }),
  simClamp: oneOf(SIM_CLAMPS, {
    default: 'relu',
    model: true,
    help: "Graph weights from the last exit's cosines: max(0, cos) (default: a graph of non-negative affinities; a raw negative cosine in S^b pulls that different-class pair together), as they are, or (1 + cos) / 2.",
  }),
  grExcludeSelf: bool({
    kind: 'bool',
    default: true,
    model: true,
    help: 'Leave self-pairs out of the intra-class graph.',
  }),
  grNormalize: bool({
    kind: 'bool',
    default: false,
    model: true,
    help: 'Divide distances by the width D (puts lambda on the scale of the cross-entropy).',
  }),
  headInit: oneOf(HEAD_INITS, { default: 'trunc_normal', model: true, help: 'Exit head initialisation.' }),
  branch: field<BranchType | BranchType[]>()({
    kind: 'enumList',
    choices: BRANCH_TYPES,
    default: 'linear',
    model: true,
    help: "Exit branch: linear (MET's head on the exit token after the final LayerNorm), mlp (a hidden layer on it), sl-vit (one transformer encoder layer over the exit token and the patch tokens, then LayerNorm and head), conv-ignore, conv-add, conv-project (a 3x3 conv over the patch grid with the class token ignored, added to every patch, or projected in as a channel). One type for every exit, or a list with one per exit (on the command line: comma-separated).",
  }),
  // Branch widths, copycat and regression settings are in the model's config only when set
  // (metConfigOf), so runs that do not use them keep the config they always had.
  branchHidden: int({ kind: 'int', min: 0, default: 0, help: 'mlp branch: hidden width (0: the backbone width D).' }),
  branchChannels: int({
    kind: 'int',
    min: 0,
    default: 0,
    help: 'conv branches: output channels of the 3x3 conv (0: D / 4).',
  }),
  branchHeads: int({
    kind: 'int',
    min: 0,
    default: 0,
    help: "sl-vit branch: attention heads, dividing D (0: the backbone's).",
  }),
  branchMlpRatio: num({
    kind: 'number',
    min: 0,
    default: 0,
    help: "sl-vit branch: MLP width as a multiple of D (0: the backbone's).",
  }),
  distill: num({
    kind: 'number',
    min: 0,
    default: 0,
    help: "Copycat fine-tuning: weight of the distillation of the final exit's softened outputs into every early exit, T^2 KL(softmax(z_K/T) || softmax(z_j/T)) with the final exit's logits detached, added to MET's losses (0: off; with lambda 0: without graph regularization).",
  }),
  distillTemperature: num({
    kind: 'number',
    min: 0,
    default: DISTILL_DEFAULT_TEMPERATURE,
    help: 'Copycat fine-tuning: softmax temperature T (> 0) of the final exit and the early exits (default 2).',
  }),
  task: oneOf(TASKS, {
    default: 'classification',
    help: 'classification (class folders) or regression: every exit predicts a number; the folder holds images and a targets file mapping each image to its value (see targets).',
  }),
  targets: str({
    kind: 'path',
    help: 'Regression: CSV (file,value per line, optional header) or JSON ({"file": value}) with image paths relative to the data folder. Default: targets.csv, targets.json, labels.csv, labels.json, values.csv or values.json at the data folder\'s root. Missing or non-numeric values are skipped and listed in report.json.',
  }),
  regLoss: oneOf(REG_LOSSES, {
    default: 'mse',
    help: 'Regression: per-exit loss, mean squared error or mean absolute error (graph regularization is off for regression).',
  }),
  standardize: bool({
    kind: 'bool',
    default: true,
    help: "Regression: train on (value - mean) / std of the training split's targets; predictions and metrics are mapped back to the targets' units.",
  }),
  // Optimisation (NOAH / DyT defaults for VTAB, fewer epochs).
  epochs: int({ kind: 'int', min: 1, default: 20, help: 'Training epochs.' }),
  batch: int({ kind: 'int', min: 1, default: 32, help: 'Images per step.' }),
  lr: num({ kind: 'number', min: 0, default: 1e-3, help: 'Peak learning rate (AdamW).' }),
  minLr: num({ kind: 'number', min: 0, default: 1e-5, help: 'Learning rate at the end of the cosine decay.' }),
  weightDecay: num({
    kind: 'number',
    min: 0,
    default: 1e-4,
    help: 'AdamW weight decay (projections and head matrices).',
  }),
  warmupEpochs: num({ kind: 'number', min: 0, default: 2, help: 'Linear warm-up length in epochs.' }),
  seed: int({
    kind: 'int',
    min: 0,
    default: 0,
    help: 'Seed of the split, the initialisation, the batch order and augmentation.',
  }),
  split: field<[number, number, number]>()({
    kind: 'numbers',
    length: 3,
    min: 0,
    max: 100,
    default: [70, 10, 20],
    help: 'Train, val and test percentages when the folder has no split folders.',
  }),
  resize: oneOf(RESIZES, {
    default: 'direct',
    help: 'Resize straight to the input size (VTAB) or resize and centre-crop (timm eval).',
  }),
  augment: bool({ kind: 'bool', default: false, help: 'Random resized crop and horizontal flip for training images.' }),
  dynamicExits: ints({
    kind: 'ints',
    min: 1,
    help: 'Exits (1-based exit numbers, e.g. 1,4,7) used by budgeted inference; default all.',
  }),
  device: oneOf(DEVICES, {
    default: 'cpu',
    help: 'Execution provider; auto tries the GPU providers of this platform (Linux: CUDA, WebGPU; Windows: CUDA, WebGPU, DirectML; macOS: WebGPU), each checked by a test session, then the CPU. CoreML (macOS) runs inference only.',
  }),
  threads: int({ kind: 'int', min: 1, help: 'CPU threads (default: one per core).' }),
  out: str({ kind: 'path', help: 'Run folder (default .met/runs/<time>-<variant>).' }),
};

type Table = typeof SETTINGS;
export type SettingKey = keyof Table;
type ValueOf<K extends SettingKey> = NonNullable<Table[K]['__value']>;
/** Settings that always have a value once resolved: a default, or required. */
type Always<K extends SettingKey> = Table[K] extends { default: unknown } | { required: true } ? K : never;
type Sometimes<K extends SettingKey> = Table[K] extends { default: unknown } | { required: true } ? never : K;

/** The resolved settings of a fine-tuning run (met.config.json, then `met train` flags). */
export type TrainSettings = { -readonly [K in SettingKey as Always<K>]: ValueOf<K> } & {
  -readonly [K in SettingKey as Sometimes<K>]?: ValueOf<K>;
};

/** Keys that are part of the model's MetConfig under the same name (the `model: true` rows). */
export type ModelSettingKey = { [K in SettingKey]: Table[K] extends { model: true } ? K : never }[SettingKey];
export type ModelSettings = Pick<TrainSettings, ModelSettingKey>;

/** One row of the table, with its key (what validation, the schema, flags and docs walk over). */
export interface Field extends SettingSpec {
  key: SettingKey;
}

export const FIELDS: readonly Field[] = Object.entries(SETTINGS).map(([key, s]) => ({
  ...(s as SettingSpec),
  key: key as SettingKey,
}));

export const MODEL_KEYS = FIELDS.filter((f) => f.model).map((f) => f.key) as readonly ModelSettingKey[];

/** Every default in the table (the required settings have none). */
export function defaultsOf<K extends SettingKey>(keys: readonly K[]): { [P in K]: TrainSettings[P] } {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const d = (SETTINGS[k] as SettingSpec).default;
    // Arrays are copied: a caller that edits its defaults must not edit the table.
    if (d !== undefined) out[k] = Array.isArray(d) ? [...d] : d;
  }
  return out as { [P in K]: TrainSettings[P] };
}

export const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
export const flagOf = (f: Field) => f.flag ?? kebab(f.key);
