import {
  applyMomentMap,
  GrowthError,
  type MomentMap,
  momentSlots,
  type Params,
  paramTable,
  type TransformerSpec,
} from '@sprout/core'

const EXPERT_OR_ROUTER = /^(layers\.\d+\.mlp)\.(?:experts\.\d+\.(.+)|router\.weight)$/

/**
 * How Adam's moments follow upcycling, as Komatsuzaki et al. resume the dense run: every expert of
 * layer l copies the moments of layer l's dense MLP, routers (new) start at zero, everything else
 * is copied. Outside the MoE layers the gradients are exactly the dense model's (the renormalised
 * gates sum to 1, so the layer's input gradient is the dense MLP's; without auxiliary losses); an
 * expert's gradient is the dense MLP's restricted to its routed tokens and weighted by their
 * gates (the experts' gradients sum to the dense one), so the copy is the paper's choice, not an
 * identity of gradients.
 */
export function upcycleMomentMap(spec: TransformerSpec): MomentMap {
  const map: MomentMap = {}
  for (const { name } of paramTable(spec)) {
    const m = EXPERT_OR_ROUTER.exec(name)
    map[name] = !m ? { from: name } : m[2] === undefined ? {} : { from: `${m[1]}.${m[2]}` }
  }
  return map
}

/**
 * Optimizer state for an upcycled model from the dense model's (`upcycleMomentMap` through core's
 * `applyMomentMap`). State tensors are named `<slot>.<parameter>` (the trainer's AdamW saves
 * `m.<name>` and `v.<name>`, SGD `momentum.<name>`). `spec` is the upcycled spec (with `moe`).
 * Returns new tensors; the input is not consumed.
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
  for (const key of Object.keys(denseState)) {
    const dot = key.indexOf('.')
    if (dot <= 0 || !dense.has(key.slice(dot + 1)))
      throw new GrowthError(
        `upcycleOptimizerState: state tensor "${key}" is not "<slot>.<parameter>" for a parameter of the dense model`,
      )
  }
  for (const slot of momentSlots(denseState))
    for (const name of dense)
      if (!denseState[`${slot}.${name}`])
        throw new GrowthError(
          `upcycleOptimizerState: the dense state has no "${slot}.${name}" (slot "${slot}" is incomplete)`,
        )
  return applyMomentMap(upcycleMomentMap(spec), denseState, paramTable(spec))
}
