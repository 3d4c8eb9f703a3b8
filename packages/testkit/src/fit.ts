import type { Batch, FitRequest, FitResult } from '@sprout/core'
import { SproutError } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import type { BatchSource } from './synthetic.js'

export interface FitOptions {
  /** Run at most this many steps whatever the operator asks for (keeps conformance runs fast). */
  maxSteps?: number
  beta1?: number
  beta2?: number
  epsilon?: number
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
 * A small GrowthContext.fit: AdamW (decoupled weight decay, bias-corrected moments) at the
 * requested constant learning rate on the operator's trainables, on batches from `source`.
 * Records the held-out loss before and after, so a test can tell whether fitting helped
 * without trusting the operator's own numbers.
 */
export function createTestFit(
  source: BatchSource,
  records: FitRecord[],
  options: FitOptions = {},
): (request: FitRequest) => Promise<FitResult> {
  const { beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8 } = options
  return async (request) => {
    const start = performance.now()
    const steps = Math.min(request.steps, options.maxSteps ?? request.steps)
    const names = Object.keys(request.trainables)
    const vars = names.map((n) => request.trainables[n])
    const m: tf.Tensor[] = vars.map((v) => tf.zerosLike(v))
    const s: tf.Tensor[] = vars.map((v) => tf.zerosLike(v))
    const label = request.label ?? 'fit'
    if (steps === 0) {
      records.push({ label, steps, losses: [], heldOutBefore: Number.NaN, heldOutAfter: Number.NaN })
      return { losses: [], steps: 0, flops: 0, seconds: 0 }
    }
    // Several held-out batches: one small batch is too noisy to tell a real improvement.
    const heldOut: Batch[] = Array.from({ length: HELD_OUT_BATCHES }, () => source.next())
    const heldOutLoss = () =>
      heldOut.reduce((sum, b) => sum + scalar(tf.tidy(() => request.loss(b))), 0) / heldOut.length
    const losses: number[] = []
    try {
      const heldOutBefore = heldOutLoss()
      for (let step = 1; step <= steps; step++) {
        const batch = source.next()
        try {
          const { value, grads } = tf.variableGrads(() => request.loss(batch), vars)
          const loss = scalar(value)
          if (!Number.isFinite(loss)) {
            tf.dispose(Object.values(grads))
            throw new SproutError('TRAINING_DIVERGED', `${label}: fitting loss is ${loss} at step ${step}`)
          }
          losses.push(loss)
          const lr = request.learningRate
          const wd = request.weightDecay ?? 0
          const c1 = 1 - beta1 ** step
          const c2 = 1 - beta2 ** step
          tf.tidy(() => {
            vars.forEach((v, i) => {
              const g = grads[v.name]
              if (!g) return
              const mi = tf.add(tf.mul(m[i], beta1), tf.mul(g, 1 - beta1))
              const si = tf.add(tf.mul(s[i], beta2), tf.mul(tf.square(g), 1 - beta2))
              const update = tf.div(tf.div(mi, c1), tf.add(tf.sqrt(tf.div(si, c2)), epsilon))
              v.assign(tf.sub(tf.mul(v, 1 - lr * wd), tf.mul(update, lr)))
              m[i].dispose()
              s[i].dispose()
              m[i] = tf.keep(mi)
              s[i] = tf.keep(si)
            })
          })
          tf.dispose(Object.values(grads))
        } finally {
          tf.dispose(Object.values(batch))
        }
      }
      const heldOutAfter = heldOutLoss()
      records.push({ label, steps, losses, heldOutBefore, heldOutAfter })
    } finally {
      tf.dispose([...m, ...s, ...heldOut.flatMap((b) => Object.values(b))])
    }
    return { losses, steps, flops: request.flopsPerStep * steps, seconds: (performance.now() - start) / 1000 }
  }
}
