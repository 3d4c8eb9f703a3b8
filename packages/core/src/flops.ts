import { attnWidth, expertDFF, isMoELayer, kvWidth, type TransformerSpec } from './spec.js'

export interface FlopBreakdown {
  /** Forward FLOPs for one sequence (or one image) of `seqLen` tokens. */
  forward: number
  /** Backward ≈ 2 × forward (gradients w.r.t. activations and weights). */
  backward: number
  /** forward + backward: one training example. */
  total: number
  /** Parts of the forward pass. */
  parts: { embed: number; attnProj: number; attnScores: number; mlp: number; router: number; head: number }
}

/**
 * Analytic FLOPs of one example: 2 per multiply-add of every matmul, attention scores and
 * the weighted sum included (full T×T, as in Kaplan et al.), MoE counting only the k active
 * experts plus the router. Norms, activations and softmax are ignored (< 1% at these sizes).
 */
export function exampleFlops(spec: TransformerSpec, seqLen: number = spec.maxSeqLen): FlopBreakdown {
  const D = spec.dModel
  const A = attnWidth(spec)
  const KV = kvWidth(spec)
  const F = spec.dFF
  const T = spec.family === 'vit' ? spec.maxSeqLen : seqLen
  const mlpMats = spec.activation === 'swiglu' ? 3 : 2
  const parts = { embed: 0, attnProj: 0, attnScores: 0, mlp: 0, router: 0, head: 0 }
  if (spec.family === 'vit') {
    const img = spec.image!
    parts.embed = 2 * (T - 1) * img.patch * img.patch * img.channels * D
    parts.head = 2 * D * img.classes
  } else {
    parts.head = 2 * T * D * spec.vocabSize
    if (spec.mlmHead) parts.head += 2 * T * D * D
  }
  for (let l = 0; l < spec.nLayers; l++) {
    parts.attnProj += 2 * T * (D * A + 2 * D * KV + A * D)
    parts.attnScores += 2 * 2 * T * T * A
    const dense = 2 * T * mlpMats * D * F
    if (isMoELayer(spec, l)) {
      parts.mlp += 2 * T * mlpMats * D * expertDFF(spec) * spec.moe!.topK
      parts.router += 2 * T * D * spec.moe!.experts
    } else {
      parts.mlp += dense
    }
  }
  const forward = Object.values(parts).reduce((a, b) => a + b, 0)
  return { forward, backward: 2 * forward, total: 3 * forward, parts }
}

/** Training FLOPs for `steps` steps of `batchSize` examples of `seqLen` tokens. */
export function trainingFlops(
  spec: TransformerSpec,
  steps: number,
  batchSize: number,
  seqLen?: number,
): number {
  return exampleFlops(spec, seqLen).total * batchSize * steps
}

/** Accumulates FLOPs by label (growth, operator fitting, training, evaluation). */
export class FlopMeter {
  private readonly byLabel = new Map<string, number>()
  add(flops: number, label = 'other'): void {
    if (!Number.isFinite(flops) || flops < 0)
      throw new RangeError(`FLOP count must be a finite non-negative number, got ${flops}`)
    this.byLabel.set(label, (this.byLabel.get(label) ?? 0) + flops)
  }
  get total(): number {
    let t = 0
    for (const v of this.byLabel.values()) t += v
    return t
  }
  breakdown(): Record<string, number> {
    return Object.fromEntries(this.byLabel)
  }
}

export function formatFlops(flops: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P', 'E']
  let i = 0
  let v = flops
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000
    i++
  }
  return `${v.toPrecision(3)} ${units[i]}FLOP`
}
