import type { TransformerSpec } from '@sprout/core'
import type { ProgressiveLine } from './suites.js'

/** The source model's pretraining for one seed (shared by every method of that seed). */
export interface SourceRun {
  steps: number
  flops: number
  seconds: number
  valLoss: number
}

/** A point of a validation curve; flops and seconds include growth and operator fitting. */
export interface CurvePoint {
  step: number
  flops: number
  seconds: number
  valLoss: number
}

/** One planned line of the comparison: scratch, a method on the suite's target, or a variant. */
export interface Planned {
  name: string
  method: string
  target: TransformerSpec
  options: Record<string, unknown>
  /** Trains another target than the suite's (e.g. an upcycled MoE): no saving is claimed. */
  variant: boolean
  /** A progressive line: trained from scratch at a small size and grown during the run. */
  progressive?: ProgressiveLine
}

/** One growth of a progressive run, as the run recorded it. */
export interface StageSummary {
  step: number
  method: string
  growthFlops: number
  seconds: number
  valLossBefore: number | null
  valLossAfter: number
}

/**
 * One training run, persisted as soon as it finishes: a (seed, name, budget) cell of the
 * comparison, plus the learning rate for scratch's sweep.
 */
export interface MethodRun {
  name: string
  method: string
  /** Seed index (0-based); the seed value is the suite's seed plus this. */
  seed: number
  /** Fraction of the suite's targetSteps; the schedule fully decays at this budget. */
  budget: number
  steps: number
  lr: number
  /** Scratch's sweep: the multiplier of the suite's learning rate this run used. */
  lrMult?: number
  status: 'done' | 'skipped'
  reason?: string
  /** Target spec when it differs from the suite's (variants). */
  variantTarget?: TransformerSpec
  growthFlops: number
  growthSeconds: number
  /** Validation curve from the start of target training (growth included in flops/seconds). */
  curve: CurvePoint[]
  finalValLoss: number | null
  schedule: 'suite' | 'recommended'
  scheduleNote?: string
  details?: Record<string, unknown>
  /** A progressive run: no source (both accountings charge everything); its growths in order. */
  stages?: StageSummary[]
}
