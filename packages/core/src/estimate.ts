import { formatBytes } from './limits.js'
import { attnWidth, expertDFF, kvWidth, type TransformerSpec } from './spec.js'

/**
 * Memory estimates computed from a spec in closed form, without enumerating its parameters
 * (a spec with nLayers 1e6 or 1e6 experts would take seconds and gigabytes to enumerate).
 * They are float32 byte counts: lower bounds of what tfjs will allocate, used to refuse work
 * that cannot fit before anything is allocated.
 */

/** Parameters of a spec; equals `countParams(spec)` (tested), in O(1). */
export function estimateParamCount(spec: TransformerSpec): number {
  const D = spec.dModel
  const A = attnWidth(spec)
  const KV = kvWidth(spec)
  const F = spec.dFF
  const b = spec.bias ? 1 : 0
  const norm = D * (spec.bias && spec.norm === 'layernorm' ? 2 : 1)
  const linear = (i: number, o: number, withBias = b) => i * o + withBias * o
  let n = 0
  if (spec.family === 'vit') {
    const img = spec.image!
    n += linear(img.patch * img.patch * img.channels, D) + D
  } else n += spec.vocabSize * D
  if (spec.positional !== 'rotary') n += spec.maxSeqLen * D
  if (spec.normPlacement === 'post') n += norm
  const mlp = (H: number) => linear(D, H) * (spec.activation === 'swiglu' ? 2 : 1) + linear(H, D)
  const attn = 2 * norm + linear(D, A) + 2 * linear(D, KV) + linear(A, D)
  const moeLayers = spec.moe?.layers.length ?? 0
  n += spec.nLayers * attn + (spec.nLayers - moeLayers) * mlp(F)
  if (spec.moe) n += moeLayers * (linear(D, spec.moe.experts, 0) + spec.moe.experts * mlp(expertDFF(spec)))
  if (spec.normPlacement === 'pre') n += norm
  if (spec.family === 'vit') n += linear(D, spec.image!.classes)
  else if (spec.mlmHead) n += linear(D, D) + norm + b * spec.vocabSize
  else if (!spec.tieEmbeddings) n += D * spec.vocabSize
  return n
}

export interface MemoryEstimate {
  bytes: number
  /** What the bytes are made of, for the refusal message. */
  breakdown: string
}

const F32 = 4

/** Bytes to hold a model's weights. */
export function estimateModelBytes(spec: TransformerSpec): MemoryEstimate {
  const n = estimateParamCount(spec)
  return { bytes: n * F32, breakdown: `${n.toExponential(2)} parameters in float32` }
}

export interface TrainingShape {
  batchSize: number
  seqLen: number
  /** 'adamw' keeps two moments per parameter, 'sgd' at most one (momentum). */
  optimizer: 'adamw' | 'sgd'
}

/**
 * Bytes one training step needs: weights, gradients and optimizer moments, plus the
 * activations the backward pass keeps — per layer about 12·D + 3·F values per token (inputs
 * of every matmul, norm and activation) and 2·heads·T attention probabilities, and 3 copies of
 * the logits (logits, softmax, gradient). The activation part is a lower bound.
 */
export function estimateTrainingBytes(spec: TransformerSpec, shape: TrainingShape): MemoryEstimate {
  const n = estimateParamCount(spec)
  const slots = shape.optimizer === 'adamw' ? 4 : 3 // weights, gradients, moments
  const tokens = shape.batchSize * Math.min(shape.seqLen, spec.maxSeqLen)
  const T = Math.min(shape.seqLen, spec.maxSeqLen)
  const F = spec.moe ? Math.max(spec.dFF, expertDFF(spec) * spec.moe.topK) : spec.dFF
  const perLayer = tokens * (12 * spec.dModel + 3 * F) + 2 * shape.batchSize * spec.nHeads * T * T
  const outputs = spec.family === 'vit' ? spec.image!.classes * shape.batchSize : spec.vocabSize * tokens
  const activations = (spec.nLayers * perLayer + 3 * outputs) * F32
  const state = n * slots * F32
  return {
    bytes: state + activations,
    breakdown: `${formatBytes(state)} for ${n.toExponential(2)} parameters with gradients and ${shape.optimizer} state, ${formatBytes(activations)} of activations for batches of ${shape.batchSize} × ${T}`,
  }
}

/** Bytes a growth needs at least: the source and the target weights side by side. */
export function estimateGrowthBytes(source: TransformerSpec, target: TransformerSpec): MemoryEstimate {
  const s = estimateParamCount(source)
  const t = estimateParamCount(target)
  return {
    bytes: (s + t) * F32,
    breakdown: `source ${formatBytes(s * F32)} + target ${formatBytes(t * F32)} of float32 weights`,
  }
}
