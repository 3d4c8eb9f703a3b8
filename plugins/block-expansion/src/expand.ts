import {
  assertMoELayerCopies,
  DEPTH_ONLY_FIELDS,
  GrowthError,
  type ModuleKind,
  type ParamInfo,
  type Params,
  paramTable,
  specDifference,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/**
 * The residual-branch output projections: with their weights and biases at zero a pre-norm block
 * adds nothing to the residual stream (attention output, MLP down projection, every expert's).
 */
export const ZEROED_MODULES: readonly ModuleKind[] = ['attn.o', 'mlp.fc2']

/** One target layer: which source layer it copies, and whether it is an inserted (zeroed) block. */
export interface ExpandedLayer {
  source: number
  inserted: boolean
}

/**
 * The target's layers for `every` = P: the source layers in order, with a copy of layer j inserted
 * right after it whenever j + 1 is a multiple of P (LLaMA Pro: 32 layers, P = 4 → 40 layers).
 */
export function expansionPlan(sourceLayers: number, every: number): ExpandedLayer[] {
  const plan: ExpandedLayer[] = []
  for (let j = 0; j < sourceLayers; j++) {
    plan.push({ source: j, inserted: false })
    if ((j + 1) % every === 0) plan.push({ source: j, inserted: true })
  }
  return plan
}

/** Divisors of n, for error messages that say which `every` values are possible. */
function divisors(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0)
}

/**
 * The `every` to use: the option when given (checked against the target's nLayers), otherwise the
 * one the target implies, L₁ / (L₂ − L₁). Throws a GrowthError naming both numbers and the fix.
 */
export function resolveEvery(source: TransformerSpec, target: TransformerSpec, every?: number): number {
  const L1 = source.nLayers
  const L2 = target.nLayers
  const choices = divisors(L1)
    .map((p) => `every=${p} → ${L1 + L1 / p} layers`)
    .join(', ')
  if (every !== undefined) {
    if (L1 % every !== 0)
      throw new GrowthError(
        `block-expansion: option every=${every} does not divide the source's ${L1} layers; use a divisor of ${L1} (${choices})`,
        'GROWTH_OPTIONS',
      )
    const want = L1 + L1 / every
    if (L2 !== want)
      throw new GrowthError(
        `block-expansion: every=${every} inserts ${L1 / every} blocks into the source's ${L1} layers, giving ${want}, but the target has nLayers ${L2}; set the target's nLayers to ${want}, or pick every from: ${choices}`,
        'GROWTH_OPTIONS',
      )
    return every
  }
  const added = L2 - L1
  if (added <= 0 || L1 % added !== 0)
    throw new GrowthError(
      `block-expansion inserts one block after every P source layers (P dividing ${L1}), but the target's nLayers ${L2} is not ${L1} + ${L1}/P for any P; set nLayers to one of: ${choices}`,
    )
  return L1 / added
}

/** Throws a GrowthError for anything block expansion cannot do; returns the resolved `every`. */
export function checkBlockExpansion(
  source: TransformerSpec,
  target: TransformerSpec,
  every?: number,
): number {
  const diff = specDifference(source, target, DEPTH_ONLY_FIELDS)
  if (diff)
    throw new GrowthError(
      `block-expansion grows depth only, but ${diff.field} differs (${diff.source} → ${diff.target}); grow width, heads or FFN first with lemon or net2net (function preserving), then expand`,
    )
  if (source.normPlacement === 'post')
    throw new GrowthError(
      'block-expansion needs a pre-norm model: a post-norm block re-normalises the residual stream, so a block with zeroed output projections is not an identity there; use lemon (lossless post-norm depth growth) or net2net',
    )
  if (target.nLayers < source.nLayers)
    throw new GrowthError(
      `block-expansion: target nLayers ${target.nLayers} is smaller than the source's ${source.nLayers}; growth never shrinks`,
    )
  const P = resolveEvery(source, target, every)
  const plan = expansionPlan(source.nLayers, P)
  assertMoELayerCopies('block-expansion', source, target, (i) => plan[i].source)
  return P
}

/** Parameters found by role: (layer, module, kind, expert) → name, so no name is pattern-matched. */
function roleKey(p: Pick<ParamInfo, 'layer' | 'module' | 'kind' | 'expert'>, layer: number | null): string {
  return `${layer ?? '-'}|${p.module}|${p.kind}|${p.expert ?? '-'}`
}

export interface Expansion {
  params: Params
  /** Parameters of the inserted blocks (the new structure; everything else is the source's). */
  newParams: string[]
  plan: ExpandedLayer[]
}

/**
 * Builds every target parameter: non-layer parameters and the source layers copied as they are,
 * inserted blocks copied from the layer before with their output projections zeroed. Copies share
 * the source's storage until written (tfjs clone), so growing costs little memory beyond the zeros.
 */
export function expandBlocks(
  source: TransformerSpec,
  sourceParams: Params,
  target: TransformerSpec,
  every: number,
): Expansion {
  const plan = expansionPlan(source.nLayers, every)
  const byRole = new Map<string, string>()
  for (const p of paramTable(source)) byRole.set(roleKey(p, p.layer), p.name)
  const params: Params = {}
  const newParams: string[] = []
  for (const p of paramTable(target)) {
    const at = p.layer === null ? null : plan[p.layer]
    const name = byRole.get(roleKey(p, at ? at.source : null))
    const from = name === undefined ? undefined : sourceParams[name]
    if (!from)
      throw new GrowthError(
        `block-expansion: the source has no parameter for ${p.name} (${p.module} ${p.kind}); the source checkpoint does not match its spec`,
      )
    if (at?.inserted) newParams.push(p.name)
    params[p.name] = at?.inserted && ZEROED_MODULES.includes(p.module) ? tf.zeros(p.shape) : from.clone()
  }
  return { params, newParams, plan }
}
