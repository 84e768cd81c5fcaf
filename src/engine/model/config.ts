// Backbone configuration of a general pre-LN ViT (timm naming where it exists).

export type Activation = 'gelu' | 'gelu_tanh' | 'relu';

export interface VitConfig {
  /** Input image side in pixels (square). */
  imageSize: number;
  /** Input channels (1 for grayscale backbones, 3 for RGB). */
  channels: number;
  patchSize: number;
  /** Residual width D. */
  dim: number;
  depth: number;
  heads: number;
  /** Per-head width; heads*headDim may differ from dim (vit-pytorch's dim_head). */
  headDim: number;
  mlpDim: number;
  act: Activation;
  qkvBias: boolean;
  lnEps: number;
  /** Classes of the checkpoint's own head; 0 when the checkpoint has no head. */
  numClasses: number;
  /** Patch grid side of the checkpoint's position embedding (resampled when imageSize/patchSize differs). */
  posGrid: number;
  /** Normalisation applied to [0,1] pixels: (x - mean) / std, per channel. */
  mean: number[];
  std: number[];
}

/**
 * Canonical tensor names (timm layout). Every layout converter maps to these.
 *   patch_embed.proj.weight [D, C, p, p]      patch_embed.proj.bias [D]
 *   cls_token [1, 1, D]                       pos_embed [1, 1 + G*G, D]
 *   blocks.{i}.norm1.weight/bias [D]
 *   blocks.{i}.attn.qkv.weight [3*H*dh, D]    blocks.{i}.attn.qkv.bias [3*H*dh] (optional)
 *   blocks.{i}.attn.proj.weight [D, H*dh]     blocks.{i}.attn.proj.bias [D]
 *   blocks.{i}.norm2.weight/bias [D]
 *   blocks.{i}.mlp.fc1.weight [M, D]          blocks.{i}.mlp.fc1.bias [M]
 *   blocks.{i}.mlp.fc2.weight [D, M]          blocks.{i}.mlp.fc2.bias [D]
 *   norm.weight/bias [D]
 *   head.weight [C, D]                        head.bias [C]  (optional)
 */
export function canonicalShapes(c: VitConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const inner = c.heads * c.headDim;
  m.set('patch_embed.proj.weight', [c.dim, c.channels, c.patchSize, c.patchSize]);
  m.set('patch_embed.proj.bias', [c.dim]);
  m.set('cls_token', [1, 1, c.dim]);
  m.set('pos_embed', [1, 1 + c.posGrid * c.posGrid, c.dim]);
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}.`;
    m.set(b + 'norm1.weight', [c.dim]);
    m.set(b + 'norm1.bias', [c.dim]);
    m.set(b + 'attn.qkv.weight', [3 * inner, c.dim]);
    if (c.qkvBias) m.set(b + 'attn.qkv.bias', [3 * inner]);
    m.set(b + 'attn.proj.weight', [c.dim, inner]);
    m.set(b + 'attn.proj.bias', [c.dim]);
    m.set(b + 'norm2.weight', [c.dim]);
    m.set(b + 'norm2.bias', [c.dim]);
    m.set(b + 'mlp.fc1.weight', [c.mlpDim, c.dim]);
    m.set(b + 'mlp.fc1.bias', [c.mlpDim]);
    m.set(b + 'mlp.fc2.weight', [c.dim, c.mlpDim]);
    m.set(b + 'mlp.fc2.bias', [c.dim]);
  }
  m.set('norm.weight', [c.dim]);
  m.set('norm.bias', [c.dim]);
  if (c.numClasses > 0) {
    m.set('head.weight', [c.numClasses, c.dim]);
    m.set('head.bias', [c.numClasses]);
  }
  return m;
}

/** Heads per width for the standard ViT family, used when a checkpoint does not say. */
export const HEADS_BY_DIM: Record<number, number> = { 192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16 };

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];
/** Inception-style normalisation used by Google's ViT checkpoints and timm's augreg weights. */
export const INCEPTION_MEAN = [0.5, 0.5, 0.5];
export const INCEPTION_STD = [0.5, 0.5, 0.5];
