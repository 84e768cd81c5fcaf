// Copycat fine-tuning (issue 6, item 2): the early exits also learn to match the final exit's
// softened outputs. Bakhtiarnia et al. ("Single-Layer Vision Transformers for More Accurate Early
// Exits with Less Overhead", Neural Networks 2022) fine-tune their SL-ViT branches with a strategy
// they call CopycatSL-ViT: the branches learn to copy the final exit of the backbone. Only that
// much is recoverable here (docs/method.md §7 marks it as recalled; the paper's text and
// code could not be read), so what follows is an assumption, written down:
//
//   - "Copy the final exit" is read as knowledge distillation from the final exit (Hinton et al.,
//     "Distilling the Knowledge in a Neural Network", 2015), the usual form of self-distillation in
//     multi-exit networks (BYOT, LGViT): for every early exit j < K,
//         KD_j = T² · KL( softmax(z_K / T) ‖ softmax(z_j / T) )
//              = T² · mean_b Σ_c p_bc (log p_bc − log q_bc),
//         p = softmax(z_K / T) (teacher, detached), q = softmax(z_j / T) (student),
//     the per-sample KL summed over classes and averaged over the batch (PyTorch's
//     F.kl_div(log q, log p, log_target=True, reduction='batchmean') · T²). The Copycat CNN the name
//     alludes to (Correia-Silva et al., 2018) trains on the hard labels of the model it copies;
//     that is the T → 0 limit of this loss up to the T² factor, so the soft form is the more
//     general reading. The p log p term is a constant for the student; it is kept so that the
//     value is the true KL (0 when an exit copies the final exit exactly, never negative).
//   - The teacher logits z_K are DETACHED (stop-gradient). The final exit is what is being copied:
//     letting the KD gradient reach it would pull it towards the weaker early exits (the copy
//     would change the original), and the final exit keeps its own cross-entropy. Gradients still
//     reach everything the student exit depends on, the shared E-adapter projections included.
//     (Graph regularization takes its similarity graph from the same detached logits.)
//   - The T² factor keeps the gradient's size roughly independent of T (the gradient of the KL
//     w.r.t. z_j is (q − p) / T per sample), so the weight means the same thing at any T.
//   - The total loss is MET's plus the distillation term, with the cross-entropy of every exit
//     kept (the final exit's labels still train the teacher while it is being copied):
//         L = Σ_j CE_j + λ Σ_{j<K} GR_j + w Σ_{j<K} KD_j
//     `--distill w` (default 0 = off), `--distill-temperature T` (default 2), "alone" = with
//     `--lambda 0` (no graph regularization), "together" = with MET's λ > 0. Training is one stage
//     (the teacher is trained at the same time); a two-stage schedule (train, then copy from a
//     frozen final exit) is not built.
//   - Default temperature 2: KD work uses T in about 2..4 (Hinton et al.; BYOT uses 3). The final
//     exit of a fine-tuned backbone is usually confident (vit-mnist-tiny's is right on 96% of
//     MNIST); T = 1 then gives almost one-hot targets (little beyond the labels), a large T flattens
//     them towards uniform, and T² then scales up the noise in the small probabilities. 2 keeps the
//     final exit's decision dominant (copying is the point) while showing its ranking of the other
//     classes.
//
// Regression exits (C = 1) have no class distribution to copy: the softmax of one logit is 1 and
// the KL is identically 0, so `distill` is refused there rather than silently doing nothing.

import type { Graph, Tensor } from '../graph/ir';
import { DISTILL_DEFAULT_TEMPERATURE } from '../settings';

/** Copycat settings as MetConfig / TrainConfig hold them (absent = off). */
export interface DistillSettings {
  /** Weight w of Σ_{j<K} KD_j (0 = off). */
  distill?: number;
  /** Softmax temperature T (> 0) of teacher and student. */
  distillTemperature?: number;
}

/** The weight in effect (0 when off). */
export const distillWeight = (s: DistillSettings): number => s.distill ?? 0;
export const distillTemperature = (s: DistillSettings): number => s.distillTemperature ?? DISTILL_DEFAULT_TEMPERATURE;

/** Checks the settings; errors name the field. */
export function validateDistill(s: DistillSettings, numClasses: number): void {
  const w = s.distill ?? 0;
  if (!(Number.isFinite(w) && w >= 0))
    throw new Error(`distill must be a non-negative number (0 = off), got ${s.distill}`);
  const T = distillTemperature(s);
  if (!(Number.isFinite(T) && T > 0))
    throw new Error(`distillTemperature must be a positive number, got ${s.distillTemperature}`);
  if (w > 0 && numClasses < 2)
    throw new Error(
      `distill: copycat distillation matches class distributions and needs at least 2 classes (got ${numClasses} outputs per exit; a regression exit has no distribution to copy)`,
    );
}

/**
 * KD_j = T² · mean over the batch of KL(softmax(teacher / T) ‖ softmax(student / T)), both [B, C];
 * the teacher is detached here (see the header), so callers may pass the live final-exit logits.
 */
export function distillationLoss(g: Graph, student: Tensor, teacher: Tensor, T: number): Tensor {
  const C = student.shape[student.rank - 1];
  if (typeof C === 'number' && C < 2)
    throw new Error(`distill: the exit has ${C} output(s); copycat distillation needs class logits (C >= 2)`);
  const inv = 1 / T;
  const logp = g.logSoftmax(g.mulScalar(g.stopGradient(teacher), inv), -1); // [B, C], constant
  const logq = g.logSoftmax(g.mulScalar(student, inv), -1);
  const p = g.exp(logp);
  const kl = g.sum(g.mul(p, g.sub(logp, logq)), [-1]); // [B]
  return g.mulScalar(g.meanAll(kl), T * T);
}

/** Σ-ready list of KD_j for the early exits j < K (empty when off or K = 1). */
export function copycatTerms(g: Graph, s: DistillSettings, logits: Tensor[]): Tensor[] {
  const K = logits.length;
  if (distillWeight(s) === 0 || K < 2) return [];
  const T = distillTemperature(s);
  return logits.slice(0, K - 1).map((z) => distillationLoss(g, z, logits[K - 1], T));
}
