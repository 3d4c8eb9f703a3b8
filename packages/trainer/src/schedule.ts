import type { ScheduleRecommendation } from '@sprout/core'

export type ScheduleConfig =
  | { kind: 'cosine'; warmupSteps?: number; minLrRatio?: number; decaySteps?: number }
  | { kind: 'linear'; warmupSteps?: number; minLrRatio?: number; decaySteps?: number }
  | { kind: 'constant'; warmupSteps?: number }
  /** Any function of (step, totalSteps) giving the multiplier of the peak learning rate. */
  | { kind: 'function'; fn: (step: number, totalSteps: number) => number }

/**
 * Learning rate at 0-based `step` of a `totalSteps` run: linear warmup to `peak`, then cosine or
 * linear decay over `decaySteps` (default: the rest of the run) to `peak·minLrRatio`, then flat.
 */
export function learningRate(config: ScheduleConfig, peak: number, step: number, totalSteps: number): number {
  if (config.kind === 'function') return peak * config.fn(step, totalSteps)
  const warmup = config.warmupSteps ?? 0
  if (step < warmup) return (peak * (step + 1)) / warmup
  if (config.kind === 'constant') return peak
  const floor = peak * (config.minLrRatio ?? 0)
  const span = Math.max(1, config.decaySteps ?? totalSteps - warmup)
  const progress = Math.min(1, (step - warmup) / span)
  const shape = config.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress
  return floor + (peak - floor) * shape
}

/** A growth method's recommended schedule (e.g. LEMON's faster decay) as a ScheduleConfig. */
export function scheduleFromRecommendation(r: ScheduleRecommendation, totalSteps: number): ScheduleConfig {
  const warmupSteps = Math.round(r.warmupFraction * totalSteps)
  if (r.kind === 'constant') return { kind: 'constant', warmupSteps }
  return {
    kind: r.kind,
    warmupSteps,
    minLrRatio: r.minLrRatio,
    decaySteps: Math.max(1, Math.round(r.decayFraction * totalSteps) - warmupSteps),
  }
}
