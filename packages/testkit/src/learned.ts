import {
  type Batch,
  computeLoss,
  type GrowthOperator,
  type Model,
  maxAbsLogitDiff,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { fitContext } from './context.js'
import type { BatchSource } from './synthetic.js'

/** Mean cross-entropy of a model over fixed batches. */
export function meanLoss(model: Model, batches: Batch[]): number {
  let sum = 0
  for (const b of batches) sum += tf.tidy(() => computeLoss(model, b).ce.dataSync()[0])
  return sum / batches.length
}

/**
 * Grows `source` with a learned operator's initialisation only (steps = 0) and returns
 * max |Δ logits| between the grown model and the source on random inputs.
 */
export async function startLogitDiff<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  source: Model,
  target: TransformerSpec,
  options: O,
): Promise<number> {
  const { model } = await op.grow(source, target, fitContext(1), { ...options, steps: 0 })
  try {
    return maxAbsLogitDiff(source, model)
  } finally {
    tf.dispose(Object.values(model.params))
  }
}

/** Held-out loss of the source and of the model a learned operator grew and fitted on `batches`. */
export async function fittedAndSourceLoss<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  source: Model,
  target: TransformerSpec,
  options: O,
  batches: BatchSource,
  heldOut: Batch[],
): Promise<{ source: number; fitted: number; firstFitLoss: number }> {
  const { model, report } = await op.grow(source, target, fitContext(1, batches), options)
  try {
    const losses = report.details.fitLosses as number[]
    return { source: meanLoss(source, heldOut), fitted: meanLoss(model, heldOut), firstFitLoss: losses[0] }
  } finally {
    tf.dispose(Object.values(model.params))
  }
}
