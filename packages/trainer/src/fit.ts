import { type FitRequest, type FitResult, type GrowthContext, SproutError } from '@sprout/core'
import type { BatchStream } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { AdamW } from './optimizers.js'

/**
 * The trainer's `fit` for learned growth operators (LiGO, Mango): AdamW at a constant learning
 * rate on the operator's parameters only, minimising the target model's loss on real batches
 * drawn from `stream` (anything with `next()`: a data stream, or synthetic batches in tests). FLOPs are the operator's own per-step estimate × steps.
 */
export function createFit(
  stream: Pick<BatchStream, 'next'>,
  progress: GrowthContext['progress'] = () => {},
): (request: FitRequest) => Promise<FitResult> {
  return async (request) => {
    const start = performance.now()
    const vars = Object.values(request.trainables)
    const names = new Map(Object.entries(request.trainables).map(([n, v]) => [v.name, n]))
    const optimizer = new AdamW(request.trainables, { weightDecay: request.weightDecay ?? 0 }, () => true)
    const losses: number[] = []
    const label = request.label ?? 'fit'
    try {
      for (let step = 1; step <= request.steps; step++) {
        const batch = stream.next()
        try {
          const { value, grads } = tf.variableGrads(() => request.loss(batch), vars)
          const loss = value.dataSync()[0]
          value.dispose()
          if (!Number.isFinite(loss)) {
            tf.dispose(Object.values(grads))
            throw new SproutError(
              'TRAINING_DIVERGED',
              `${label}: operator fitting loss is ${loss} at step ${step}; lower --option learningRate`,
            )
          }
          const named: Record<string, tf.Tensor> = {}
          for (const [vn, g] of Object.entries(grads)) named[names.get(vn)!] = g
          optimizer.apply(named, request.learningRate)
          tf.dispose(Object.values(grads))
          losses.push(loss)
          progress({ stage: `${label}: fitting operator`, step, total: request.steps, loss })
        } finally {
          tf.dispose(Object.values(batch))
        }
      }
    } finally {
      optimizer.dispose()
    }
    return {
      losses,
      steps: request.steps,
      flops: request.flopsPerStep * request.steps,
      seconds: (performance.now() - start) / 1000,
    }
  }
}
