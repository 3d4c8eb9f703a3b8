/** A point of a validation curve: compute and time spent so far (growth included) and the loss. */
export interface CurvePointLite {
  flops: number
  seconds: number
  valLoss: number
}

/**
 * Where a curve first reaches `target` loss: linear interpolation between the two evaluations
 * around the crossing (in FLOPs and seconds); null when it never gets there.
 */
export function firstReach(
  curve: CurvePointLite[],
  target: number,
): { flops: number; seconds: number } | null {
  for (let i = 0; i < curve.length; i++) {
    const p = curve[i]
    if (p.valLoss > target) continue
    if (i === 0) return { flops: p.flops, seconds: p.seconds }
    const q = curve[i - 1]
    const t = (q.valLoss - target) / (q.valLoss - p.valLoss)
    return { flops: q.flops + t * (p.flops - q.flops), seconds: q.seconds + t * (p.seconds - q.seconds) }
  }
  return null
}

/** The curve's loss at `flops` (linear in FLOPs between evaluations); null outside its range. */
export function lossAt(curve: CurvePointLite[], flops: number): number | null {
  if (curve.length === 0 || flops < curve[0].flops || flops > curve.at(-1)!.flops * (1 + 1e-9)) return null
  for (let i = 1; i < curve.length; i++) {
    const q = curve[i - 1]
    const p = curve[i]
    if (flops <= p.flops) {
      const t = p.flops === q.flops ? 1 : (flops - q.flops) / (p.flops - q.flops)
      return q.valLoss + t * (p.valLoss - q.valLoss)
    }
  }
  return curve.at(-1)!.valLoss
}

/** 1 − FLOPs_method / FLOPs_scratch to reach scratch's final loss (negative: costs more). */
export function savings(methodFlops: number | null, scratchFlops: number): number | null {
  return methodFlops === null ? null : 1 - methodFlops / scratchFlops
}
