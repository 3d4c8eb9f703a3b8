import * as tf from '@tensorflow/tfjs'
import { GrowthError } from './errors.js'
import type { AxisRole, ParamInfo, Params } from './params.js'

/**
 * How one target parameter's optimizer moments follow a growth (Staged Training, Shen et al.
 * 2022): a grown weight whose gradient equals a source weight's gradient copies its moments, one
 * whose gradient is that gradient times c gets m·c and v·c², and weights with no source (new,
 * zero-initialised, or whose gradient the growth does not determine) start at zero moments.
 *
 * Element [i₀, i₁, …] of the target reads element [index₀[i₀], index₁[i₁], …] of `from` and is
 * multiplied by factor · scale₀[i₀] · scale₁[i₁] · … (each raised to the slot's power); an index of
 * -1 on any axis makes that element zero.
 */
export interface MomentRule {
  /** Source parameter whose moments this one derives from; absent: zero moments. */
  from?: string
  /** Per target axis, the source index of each target index (-1: zero); null or absent: identity. */
  index?: (ArrayLike<number> | null)[]
  /** Per target axis, the gradient factor c at each target index; null or absent: 1. */
  scale?: (ArrayLike<number> | null)[]
  /** A gradient factor c for the whole tensor (default 1). */
  factor?: number
}

/** A rule for every target parameter, by name. */
export type MomentMap = Record<string, MomentRule>

/** Zero moments (a new parameter, or one whose gradient the growth does not determine). */
export const zeroMoments = (): MomentRule => ({})

/** A plain copy of a source parameter's moments (optionally times a gradient factor c). */
export const copyMoments = (from: string, factor = 1): MomentRule => ({ from, factor })

/**
 * The power each optimizer slot takes of the gradient factor c: AdamW's first moment m and SGD's
 * momentum scale like the gradient (c), the second moment v like its square (c²).
 */
export const MOMENT_SLOT_POWERS: Readonly<Record<string, number>> = { m: 1, v: 2, momentum: 1 }

/** Slot names in a state keyed `<slot>.<parameter>` (the trainer's AdamW saves m.* and v.*). */
export function momentSlots(state: Params): string[] {
  const slots = new Set<string>()
  for (const key of Object.keys(state)) {
    const dot = key.indexOf('.')
    if (dot <= 0) throw new GrowthError(`optimizer state tensor "${key}" is not named "<slot>.<parameter>"`)
    slots.add(key.slice(0, dot))
  }
  return [...slots]
}

function checkRule(name: string, rule: MomentRule, shape: number[], source: tf.Tensor | undefined): void {
  const bad = (why: string): never => {
    throw new GrowthError(`moment map for "${name}": ${why}`)
  }
  if (rule.from === undefined) return
  if (!source) bad(`the source optimizer state has no moments for "${rule.from}"`)
  const src = source!.shape
  if (src.length !== shape.length)
    bad(`source "${rule.from}" has rank ${src.length}, the target rank ${shape.length}`)
  for (let a = 0; a < shape.length; a++) {
    const idx = rule.index?.[a]
    const sc = rule.scale?.[a]
    if (idx) {
      if (idx.length !== shape[a]) bad(`index on axis ${a} has ${idx.length} entries for size ${shape[a]}`)
      for (let i = 0; i < idx.length; i++)
        if (!Number.isInteger(idx[i]) || idx[i] < -1 || idx[i] >= src[a])
          bad(`index ${idx[i]} on axis ${a} is outside the source's size ${src[a]}`)
    } else if (src[a] !== shape[a])
      bad(`axis ${a} has size ${shape[a]} but the source's is ${src[a]} and no index maps it`)
    if (sc && sc.length !== shape[a]) bad(`scale on axis ${a} has ${sc.length} entries for size ${shape[a]}`)
  }
}

/** One slot tensor of one target parameter, mapped from the source slot tensor. */
function mapTensor(
  rule: MomentRule,
  shape: number[],
  source: tf.Tensor | undefined,
  power: number,
): tf.Tensor {
  if (rule.from === undefined || !source) return tf.zeros(shape)
  return tf.tidy(() => {
    let t: tf.Tensor = source
    const factor = (rule.factor ?? 1) ** power
    for (let a = 0; a < shape.length; a++) {
      const idx = rule.index?.[a]
      const sc = rule.scale?.[a]
      if (idx)
        t = tf.gather(
          t,
          Int32Array.from(idx, (i) => Math.max(0, i)),
          a,
        )
      if (idx || sc) {
        const mult = Float32Array.from({ length: shape[a] }, (_, i) =>
          idx && idx[i] < 0 ? 0 : (sc ? sc[i] : 1) ** power,
        )
        const view = shape.map((n, b) => (b === a ? n : 1))
        t = tf.mul(t, tf.tensor(mult, view))
      }
    }
    if (factor !== 1) return tf.mul(t, factor)
    return t === source ? tf.clone(t) : t
  })
}

/**
 * Applies a moment map to source optimizer state (`<slot>.<parameter>`: AdamW's m and v, SGD's
 * momentum) and returns the target's, for every parameter in `target` (name → shape). Every target
 * parameter needs a rule. Returns new tensors; the input state is not consumed.
 */
export function applyMomentMap(
  map: MomentMap,
  sourceState: Params,
  target: Record<string, number[]> | ParamInfo[],
): Params {
  const shapes: Record<string, number[]> = Array.isArray(target)
    ? Object.fromEntries(target.map((p) => [p.name, p.shape]))
    : target
  const slots = momentSlots(sourceState)
  for (const slot of slots)
    if (MOMENT_SLOT_POWERS[slot] === undefined)
      throw new GrowthError(
        `optimizer slot "${slot}" has no known gradient power (known: ${Object.keys(MOMENT_SLOT_POWERS).join(', ')})`,
      )
  for (const [name, shape] of Object.entries(shapes)) {
    const rule = map[name]
    if (!rule) throw new GrowthError(`moment map has no rule for target parameter "${name}"`)
    for (const slot of slots) checkRule(name, rule, shape, sourceState[`${slot}.${rule.from}`])
  }
  const out: Params = {}
  try {
    for (const [name, shape] of Object.entries(shapes))
      for (const slot of slots) {
        const rule = map[name]
        out[`${slot}.${name}`] = mapTensor(
          rule,
          shape,
          sourceState[`${slot}.${rule.from}`],
          MOMENT_SLOT_POWERS[slot],
        )
      }
  } catch (e) {
    tf.dispose(Object.values(out))
    throw e
  }
  return out
}

/** How a width growth maps one axis role: the source index of each target index and, where the
 * axis is the output side of a parameter, the factor its gradient takes there. */
export interface AxisMoments {
  /** Source index of each target index (-1: no source, zero moments). */
  index: ArrayLike<number>
  /** Gradient factor at each target index when this axis is a parameter's output side (default 1). */
  outputScale?: ArrayLike<number>
}

/**
 * The moment rule of a parameter widened by duplication (Net2Net FPI, LEMON): activations on a
 * duplicated axis are copies, so the input side of a weight keeps factor 1, while the gradient
 * arriving at duplicated outputs is divided among the copies (factor `outputScale`). Embeddings,
 * biases and norm weights have only output sides. `fullGradient` marks a parameter whose output
 * feeds a consumer that reads the copies undivided (the norm before a tied head): factor 1.
 */
export function widenedMomentRule(
  info: ParamInfo,
  from: string,
  axes: Partial<Record<AxisRole, AxisMoments>>,
  fullGradient = false,
): MomentRule {
  const index: (ArrayLike<number> | null)[] = []
  const scale: (ArrayLike<number> | null)[] = []
  info.axes.forEach((role, a) => {
    const m = axes[role]
    const input = info.kind === 'weight' && info.axes.length === 2 && a === 0
    index.push(m ? m.index : null)
    scale.push(m?.outputScale && !input && !fullGradient ? m.outputScale : null)
  })
  return { from, index, scale }
}

/** 1/(number of target indices copying the same source index), for each target index (-1: 0). */
export function replicaFactors(index: ArrayLike<number>): Float32Array {
  const counts = new Map<number, number>()
  for (let i = 0; i < index.length; i++) counts.set(index[i], (counts.get(index[i]) ?? 0) + 1)
  return Float32Array.from({ length: index.length }, (_, i) => (index[i] < 0 ? 0 : 1 / counts.get(index[i])!))
}
