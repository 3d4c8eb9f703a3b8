import type { Batch, FitRequest, FitResult } from '@sprout/core'
import { createFit } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import type { BatchSource } from './synthetic.js'

export interface FitOptions {
  /** Run at most this many steps whatever the operator asks for (keeps conformance runs fast). */
  maxSteps?: number
}

/** What the testkit's fit observed, for the "fitting reduces the loss" check. */
export interface FitRecord {
  label: string
  steps: number
  losses: number[]
  /** Loss on a fixed held-out batch before the first and after the last step. */
  heldOutBefore: number
  heldOutAfter: number
}

const HELD_OUT_BATCHES = 4

function scalar(loss: tf.Scalar): number {
  const v = loss.dataSync()[0]
  loss.dispose()
  return v
}

/**
 * GrowthContext.fit for tests: the trainer's own `createFit` (AdamW at the requested constant
 * learning rate on the operator's trainables) on batches from `source`, capped at `maxSteps`.
 * Records the held-out loss before and after, so a test can tell whether fitting helped
 * without trusting the operator's own numbers.
 */
export function createTestFit(
  source: BatchSource,
  records: FitRecord[],
  options: FitOptions = {},
): (request: FitRequest) => Promise<FitResult> {
  const trainerFit = createFit(source)
  return async (request) => {
    const steps = Math.min(request.steps, options.maxSteps ?? request.steps)
    const label = request.label ?? 'fit'
    if (steps === 0) {
      records.push({ label, steps, losses: [], heldOutBefore: Number.NaN, heldOutAfter: Number.NaN })
      return { losses: [], steps: 0, flops: 0, seconds: 0 }
    }
    // Several held-out batches: one small batch is too noisy to tell a real improvement.
    const heldOut: Batch[] = Array.from({ length: HELD_OUT_BATCHES }, () => source.next())
    const heldOutLoss = () =>
      heldOut.reduce((sum, b) => sum + scalar(tf.tidy(() => request.loss(b))), 0) / heldOut.length
    try {
      const heldOutBefore = heldOutLoss()
      const result = await trainerFit({ ...request, steps })
      records.push({ label, steps, losses: result.losses, heldOutBefore, heldOutAfter: heldOutLoss() })
      return result
    } finally {
      tf.dispose(heldOut.flatMap((b) => Object.values(b)))
    }
  }
}

/** Disposes every tensor of a batch. */
export function disposeBatch(b: Batch): void {
  tf.dispose(Object.values(b))
}
