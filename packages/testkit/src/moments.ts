import {
  applyMask,
  applyMomentMap,
  type Batch,
  type GrowthResult,
  loss,
  type Model,
  type Params,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/** One optimizer slot of one target parameter: mapped moments against the grown model's own. */
export interface MomentComparison {
  name: string
  slot: 'm' | 'v'
  /** max |mapped − grown| over the tensor. */
  maxAbsDiff: number
  /** max |grown| over the tensor (the scale for a relative tolerance). */
  maxAbs: number
}

/**
 * Gradient of the training loss of `model` on `batch` for every parameter (new tensors); `view`
 * transforms the model inside the differentiated function (e.g. a growth mask at step 0).
 */
export function lossGradients(model: Model, batch: Batch, view: (m: Model) => Model = (m) => m): Params {
  const names = Object.keys(model.params)
  const grads = tf.grads((...ts: tf.Tensor[]) =>
    loss(view({ spec: model.spec, params: Object.fromEntries(names.map((n, i) => [n, ts[i]])) }), batch),
  )(names.map((n) => model.params[n]))
  return Object.fromEntries(names.map((n, i) => [n, grads[i]]))
}

/** AdamW's moments after one step from zero: m = (1 − β1)·g, v = (1 − β2)·g². */
export function firstStepMoments(grads: Params, beta1 = 0.9, beta2 = 0.99): Params {
  const out: Params = {}
  for (const [n, g] of Object.entries(grads)) {
    out[`m.${n}`] = tf.mul(g, 1 - beta1)
    out[`v.${n}`] = tf.tidy(() => tf.mul(tf.square(g), 1 - beta2))
  }
  return out
}

/**
 * The check of a method's moment map against an independent computation: one AdamW step on the
 * source (moments from zero), mapped through `grown.moments`, compared with the moments one step
 * on the grown model gets from its own gradient on the same batch. Where the growth makes the
 * grown gradient a copy or a scaled copy of a source gradient, the two agree to float error.
 */
export function compareMappedMoments(source: Model, grown: GrowthResult, batch: Batch): MomentComparison[] {
  if (!grown.moments) throw new Error(`${grown.report.method} returned no moment map`)
  const sourceGrads = lossGradients(source, batch)
  // A growth mask (new structure fading in) is at 0 where training starts.
  const grownGrads = lossGradients(grown.model, batch, (m) => applyMask(m, grown.mask, 0))
  const sourceState = firstStepMoments(sourceGrads)
  const grownState = firstStepMoments(grownGrads)
  const shapes = Object.fromEntries(Object.entries(grown.model.params).map(([n, t]) => [n, t.shape]))
  const mapped = applyMomentMap(grown.moments, sourceState, shapes)
  try {
    const out: MomentComparison[] = []
    for (const name of Object.keys(shapes))
      for (const slot of ['m', 'v'] as const) {
        const key = `${slot}.${name}`
        const [d, a] = tf.tidy(() => [
          tf.max(tf.abs(tf.sub(mapped[key], grownState[key]))).dataSync()[0],
          tf.max(tf.abs(grownState[key])).dataSync()[0],
        ])
        out.push({ name, slot, maxAbsDiff: d, maxAbs: a })
      }
    return out
  } finally {
    tf.dispose([
      ...Object.values(sourceGrads),
      ...Object.values(grownGrads),
      ...Object.values(sourceState),
      ...Object.values(grownState),
      ...Object.values(mapped),
    ])
  }
}
