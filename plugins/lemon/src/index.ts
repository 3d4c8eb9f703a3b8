import {
  capabilities,
  defineOperator,
  GrowthError,
  type GrowthResult,
  kvHeads,
  type MomentMap,
  maxAbsLogitDiff,
  type Params,
  type ScheduleRecommendation,
  shouldVerify,
  type TransformerSpec,
  validateParams,
  verifyOptionsShape,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { depthSchedule, widen, widthPlan } from './expand.js'
import { lemonMomentMap } from './moments.js'

export const lemonOptions = z.strictObject({
  /** Std of LEMON's free parameters: zero-sum noise on split fan-ins and the residue rows. 0: plain division. */
  noiseStd: z.number().min(0).default(0.01),
  /** Std of rows for new vocabulary entries or positions (never seen by the source's inputs). */
  newStd: z.number().min(0).default(0.02),
  ...verifyOptionsShape,
  /** Recommended schedule: fraction of the planned steps over which the cosine decays. */
  decayFraction: z.number().gt(0).max(1).default(0.5),
  /** Recommended schedule: final learning rate as a fraction of the (unchanged) peak. */
  minLrRatio: z.number().min(0).max(1).default(0.1),
  /**
   * Recommended schedule: linear warm-up as a fraction of the planned steps. The optimizer starts
   * fresh, and at the full peak rate from step 1 Adam's first updates undo the head start
   * (measured on the vit suite: no warm-up ended at scratch's loss, 5 % saved 71 % of its compute).
   */
  warmupFraction: z.number().min(0).lt(1).default(0.05),
})
export type LemonOptions = z.infer<typeof lemonOptions>

const M = 'lemon'

function refuse(message: string): never {
  throw new GrowthError(`${M}: ${message}`)
}

/** The normEps the grown model needs: eps·k·D1/D2 (unchanged when D1 divides D2). */
export function grownNormEps(source: TransformerSpec, target: TransformerSpec): number {
  return source.normEps * widthPlan(source, target).s
}

/** Target layers that are mixture-of-experts layers: those whose origin (kept or copied) is one. */
export function grownMoELayers(source: TransformerSpec, targetLayers: number): number[] {
  const moe = new Set(source.moe?.layers ?? [])
  return depthSchedule(source.nLayers, targetLayers)
    .slots.map((slot, t) => (moe.has(slot.src) ? t : -1))
    .filter((t) => t >= 0)
}

function checkMoE(source: TransformerSpec, target: TransformerSpec): void {
  if (!source.moe && !target.moe) return
  if (!source.moe)
    refuse(
      'the target has mixture-of-experts layers but the source is dense; grow with lemon first, then convert with the upcycle method',
    )
  if (!target.moe)
    refuse('the source has mixture-of-experts layers; the target must keep them (set target.moe)')
  const { layers: l1, ...rest1 } = source.moe
  const { layers: l2, ...rest2 } = target.moe
  if (JSON.stringify(rest1) !== JSON.stringify(rest2))
    refuse(
      `target moe settings ${JSON.stringify(rest2)} differ from the source's ${JSON.stringify(rest1)}; LEMON keeps experts, topK and capacities (change them with the upcycle method)`,
    )
  const want = grownMoELayers(source, target.nLayers)
  if (JSON.stringify(want) !== JSON.stringify(l2))
    refuse(
      `target moe.layers ${JSON.stringify(l2)} must be ${JSON.stringify(want)}: the source's MoE layers ${JSON.stringify(l1)} at their grown positions, plus the new layers copied from them`,
    )
}

/** Throws GrowthError when LEMON cannot grow source into target exactly. */
export function checkLemon(source: TransformerSpec, target: TransformerSpec): void {
  if (source.family !== target.family)
    refuse(`cannot change family from "${source.family}" to "${target.family}"`)
  for (const a of ['norm', 'normPlacement', 'activation', 'bias', 'tieEmbeddings'] as const)
    if (target[a] !== source[a])
      refuse(
        `target ${a} ${JSON.stringify(target[a])} differs from the source's ${JSON.stringify(source[a])}; growth keeps the architecture`,
      )
  const extras = [
    ['positional', source.positional ?? 'learned', target.positional ?? 'learned'],
    ['ropeTheta', source.ropeTheta ?? null, target.ropeTheta ?? null],
    ['mlmHead', source.mlmHead ?? false, target.mlmHead ?? false],
  ] as const
  for (const [field, s, t] of extras)
    if (s !== t)
      refuse(
        `target ${field} ${JSON.stringify(t)} differs from the source's ${JSON.stringify(s)}; keep ${field}`,
      )
  if (JSON.stringify(source.image) !== JSON.stringify(target.image))
    refuse('the image settings (size, patch, channels, classes) must match')
  for (const a of ['dModel', 'nLayers', 'nHeads', 'dFF', 'maxSeqLen', 'vocabSize'] as const)
    if (target[a] < source[a])
      refuse(`target ${a} ${target[a]} is smaller than the source's ${source[a]}; growth never shrinks`)
  checkMoE(source, target)
  if (target.headDim !== source.headDim)
    refuse(
      `target headDim ${target.headDim} differs from the source's ${source.headDim}; LEMON keeps the head dimension and adds heads: set nHeads so that nHeads x ${source.headDim} is the attention width you want`,
    )
  const kv1 = kvHeads(source)
  const kv2 = kvHeads(target)
  const g1 = source.nHeads / kv1
  const g2 = target.nHeads / kv2
  if (kv2 < kv1 || g2 < g1)
    refuse(
      `target nKVHeads ${kv2} with ${target.nHeads} heads (${g2} query heads per key/value head) cannot hold copies of the source's ${kv1} key/value heads serving ${g1} query heads each; keep at least ${kv1} key/value heads and at least ${g1} query heads per key/value head`,
    )
  const plan = widthPlan(source, target)
  if (source.normPlacement === 'post' && target.nLayers > source.nLayers)
    refuse(
      `depth growth (nLayers ${source.nLayers} -> ${target.nLayers}) of a post-norm model cannot be lossless: a new layer ends in a norm, and a norm applied to the previous norm's output (with its eps, gamma and beta) is not the identity; grow only the width (and heads, FFN) of post-norm models; lossless depth growth needs a pre-norm model`,
    )
  if (plan.r > 0 && source.norm === 'layernorm' && source.normPlacement === 'post')
    refuse(
      `dModel ${plan.D1} -> ${plan.D2} is not a multiple, and a post-norm LayerNorm model cannot keep the residue entries equal to the stream mean (a LayerNorm output with non-uniform gamma has a data-dependent mean); choose a target dModel that is a multiple of ${plan.D1} (e.g. ${2 * plan.D1}); RMSNorm models have no such restriction`,
    )
  if (plan.r > 0 && source.norm === 'layernorm' && source.mlmHead)
    refuse(
      `dModel ${plan.D1} -> ${plan.D2} is not a multiple, and the masked-LM head applies its activation before its LayerNorm, so the residue entries cannot stay equal to the mean; choose a target dModel that is a multiple of ${plan.D1}`,
    )
  const need = grownNormEps(source, target)
  const ok = (e: number) => Math.abs(e - need) <= 1e-9 * need
  if (!ok(target.normEps) && target.normEps !== source.normEps)
    refuse(
      `target normEps ${target.normEps} must be the source's ${source.normEps}${plan.r > 0 ? ` (the grown model gets ${need}, i.e. eps·k·D1/D2, LEMON's variance correction for an indivisible width)` : ''}`,
    )
}

/** LEMON's training recipe for the grown model: the same peak learning rate, a faster cosine decay. */
export function lemonSchedule(options: LemonOptions): ScheduleRecommendation {
  return {
    kind: 'cosine',
    peakLrScale: 1,
    warmupFraction: options.warmupFraction,
    decayFraction: options.decayFraction,
    minLrRatio: options.minLrRatio,
    freshOptimizer: true,
    note: `LEMON: keep the peak learning rate of training from scratch (after a warm-up over ${options.warmupFraction} of the steps) and decay faster (cosine to ${options.minLrRatio}x over ${options.decayFraction} of the planned steps)`,
  }
}

const lemon = defineOperator({
  name: 'lemon',
  meta: {
    displayName: 'LEMON',
    papers: [
      {
        title: 'LEMON: Lossless model expansion',
        authors: 'Wang et al.',
        venue: 'ICLR',
        year: 2024,
        url: 'https://arxiv.org/abs/2310.07999',
      },
    ],
  },
  description:
    'Lossless growth of width (any ratio), heads, FFN and depth with function-preserving initialisation',
  options: lemonOptions,
  capabilities: capabilities('width', 'depth', 'heads', 'ffn', 'functionPreserving'),
  check: (source, target) => checkLemon(source, target),
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    checkLemon(source.spec, target)
    validateParams(source.spec, source.params)
    const s = source.spec
    const spec: TransformerSpec = { ...structuredClone(target), normEps: grownNormEps(s, target) }
    ctx.progress({ stage: 'lemon: width', step: 0, total: 2 })
    const { arrays, ops } = widen(
      s,
      target,
      (name) => source.params[name].dataSync() as Float32Array,
      ctx.random,
      {
        noiseStd: options.noiseStd,
        newStd: options.newStd,
      },
    )
    ctx.progress({ stage: 'lemon: depth', step: 1, total: 2 })
    const { slots, steps } = depthSchedule(s.nLayers, target.nLayers)
    const params: Params = {}
    let copyOps = 0
    for (const [name, a] of arrays) {
      const m = /^layers\.(\d+)\.(.*)$/.exec(name)
      if (!m) {
        params[name] = tf.tensor(a.data, a.shape)
        continue
      }
      const src = Number(m[1])
      const rest = m[2]
      slots.forEach((slot, t) => {
        if (slot.src !== src) return
        // A new layer is an exact identity in a pre-norm block: its attention output and
        // FFN-out (weights and biases) are zero, everything else copies the layer below.
        const zero = slot.fresh && /^(attn\.o|mlp\.(experts\.\d+\.)?fc2)\./.test(rest)
        params[`layers.${t}.${rest}`] = zero ? tf.zeros(a.shape) : tf.tensor(a.data, a.shape)
        if (slot.fresh) copyOps += a.data.length
      })
    }
    const model = { spec, params }
    try {
      validateParams(spec, params)
    } catch (e) {
      tf.dispose(Object.values(params))
      throw e
    }
    const growthFlops = ops + copyOps
    ctx.flops.add(growthFlops, 'growth')
    const seconds = (performance.now() - start) / 1000
    const measure = shouldVerify(options, spec)
    let diff: number | null = null
    if (measure) {
      ctx.progress({ stage: 'lemon: verify', step: 2, total: 2 })
      diff = maxAbsLogitDiff(source, model, { seed: ctx.seed })
      if (!(diff < options.tolerance)) {
        tf.dispose(Object.values(params))
        throw new GrowthError(
          `${M}: the grown model's logits differ from the source's by ${diff} (tolerance ${options.tolerance}); this is a bug in the lossless construction for ${JSON.stringify(s)} -> ${JSON.stringify(target)}, please report it`,
        )
      }
    }
    const plan = widthPlan(s, target)
    const moments: MomentMap | undefined = lemonMomentMap(s, spec) ?? undefined
    return {
      model,
      moments,
      report: {
        method: M,
        growthFlops,
        steps: 0,
        seconds,
        functionPreserving: true,
        maxAbsLogitDiff: diff,
        details: {
          widthCopies: plan.k,
          widthResidue: plan.r,
          residueFill: plan.fill,
          normEps: spec.normEps,
          depthSteps: steps,
          layerOrigins: slots.map((x) => (x.fresh ? `new(${x.src})` : String(x.src))),
        },
      },
      schedule: lemonSchedule(options),
    }
  },
})

export default lemon
export { depthSchedule, queryHeadMap, widen, widthPlan } from './expand.js'
export { lemonMomentMap } from './moments.js'
export { lemon }
