import { GrowthError, type Params, paramTable, type TransformerSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/**
 * Optimizer state for an upcycled model from the dense model's, as Komatsuzaki et al. resume
 * it: every expert of layer l gets a copy of the dense MLP's slots, routers start at zero, and
 * every other slot is copied. State tensors are named `<slot>.<parameter>` (the trainer's
 * AdamW saves `m.<name>` and `v.<name>`, SGD `momentum.<name>`); any slot prefix works.
 * `spec` is the upcycled spec (with `moe`). Returns new tensors; the input is not consumed.
 */
export function upcycleOptimizerState(denseState: Params, spec: TransformerSpec): Params {
  if (!spec.moe)
    throw new GrowthError("upcycleOptimizerState: the spec has no moe field; pass the upcycled model's spec")
  if (spec.moe.expertDFF !== undefined)
    throw new GrowthError(
      'upcycleOptimizerState: granular experts (moe.expertDFF) are rescaled shards of the dense MLP, whose moments do not carry over; train them with a fresh optimizer',
    )
  const { moe: _, ...rest } = spec
  const dense = new Set(paramTable(rest as TransformerSpec).map((p) => p.name))
  const slots = new Set<string>()
  for (const key of Object.keys(denseState)) {
    const dot = key.indexOf('.')
    if (dot <= 0 || !dense.has(key.slice(dot + 1)))
      throw new GrowthError(
        `upcycleOptimizerState: state tensor "${key}" is not "<slot>.<parameter>" for a parameter of the dense model`,
      )
    slots.add(key.slice(0, dot))
  }
  const out: Params = {}
  try {
    for (const slot of slots)
      for (const info of paramTable(spec)) {
        const m = /^(layers\.\d+\.mlp)\.(?:experts\.\d+\.(.+)|router\.weight)$/.exec(info.name)
        if (m && m[2] === undefined) {
          out[`${slot}.${info.name}`] = tf.zeros(info.shape)
          continue
        }
        const from = `${slot}.${m ? `${m[1]}.${m[2]}` : info.name}`
        const t = denseState[from]
        if (!t)
          throw new GrowthError(
            `upcycleOptimizerState: the dense state has no "${from}" (slot "${slot}" is incomplete)`,
          )
        out[`${slot}.${info.name}`] = tf.clone(t)
      }
  } catch (e) {
    tf.dispose(Object.values(out))
    throw e
  }
  return out
}
