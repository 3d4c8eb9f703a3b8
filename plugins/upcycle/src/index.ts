import {
  capabilities,
  countParams,
  defineOperator,
  expertDFF,
  forward,
  GrowthError,
  type GrowthResult,
  type Model,
  type MoESpec,
  maxAbsLogitDiff,
  type Params,
  paramTable,
  randomInputs,
  type ScheduleRecommendation,
  type SeededRandom,
  shouldVerify,
  specDifference,
  type TransformerSpec,
  validateParams,
  verifyOptionsShape,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { dropUnits, expertParam, groupedRouter } from './experts.js'
import { upcycleMomentMap } from './optimizer-state.js'

const layerList = z.array(z.number().int().min(0))

/**
 * Every MoE setting is optional: a value missing here is taken from the target spec's `moe`
 * field when it has one, else from the default (Komatsuzaki et al.'s recipe). A value given in
 * both places must agree.
 */
export const upcycleOptions = z.strictObject({
  /** Experts E per MoE layer (default 8). */
  experts: z.number().int().min(1).optional(),
  /** Experts each token is routed to (default 2). */
  topK: z.number().int().min(1).optional(),
  /** Which MLPs become MoE layers: indices, 'every-other' (1, 3, 5, ...; the paper's default) or 'all'. */
  layers: z.union([layerList, z.enum(['every-other', 'all'])]).optional(),
  /** Expert capacity in training, as a multiple of k·N/E (default 1.25). */
  capacityFactor: z.number().positive().optional(),
  /** Expert capacity in evaluation (default 2.0). */
  evalCapacityFactor: z.number().positive().optional(),
  /** Weight of the load-balancing loss (default 0.01). */
  auxLossWeight: z.number().min(0).optional(),
  /** Weight of the router z-loss (default 0.001). */
  zLossWeight: z.number().min(0).optional(),
  /** Std of the normal noise added to each expert's weight matrices (not biases); 0 keeps the copies exact. */
  noiseStd: z.number().min(0).default(0),
  /**
   * Drop-Upcycling (Nakamura et al., 2025): fraction r of each expert's intermediate units
   * re-initialised from N(mean, std) of the dense matrix, a different subset per expert; the
   * paper recommends 0.5 (`drop=true` means 0.5). Absent: plain upcycling. r > 0 is not lossless.
   */
  drop: z.preprocess((v) => (v === true ? 0.5 : v), z.number().min(0).max(1)).optional(),
  /**
   * Granular ("virtual group") upcycling (He et al., 2024): each expert holds 1/g of the dense
   * MLP's intermediate units (moe.expertDFF = dFF / g); groups of g consecutive experts share a
   * router column, fc2 is scaled by g. experts and topK (the fine-grained counts) must be
   * multiples of g. Absent: taken from the target's moe.expertDFF, else 1 (whole copies).
   */
  granularity: z.number().int().min(1).optional(),
  /** Std of the new router's normal init. */
  routerStd: z.number().min(0).default(0.02),
  // verify, verifyMaxParams, tolerance (with noiseStd 0 or drop 0: the conversion is exact).
  ...verifyOptionsShape,
})
export type UpcycleOptions = z.infer<typeof upcycleOptions>

export const UPCYCLE_DEFAULTS = {
  experts: 8,
  topK: 2,
  capacityFactor: 1.25,
  evalCapacityFactor: 2.0,
  auxLossWeight: 0.01,
  zLossWeight: 0.001,
} as const

const M = 'upcycle'

function refuse(message: string): never {
  throw new GrowthError(`${M}: ${message}`)
}

/** MLP indices for a `layers` option: 'every-other' is 1, 3, 5, ... (layer 0 for a 1-layer model). */
export function upcycledLayers(nLayers: number, layers: UpcycleOptions['layers'] = 'every-other'): number[] {
  if (layers === 'all') return Array.from({ length: nLayers }, (_, l) => l)
  if (layers === 'every-other') {
    const odd = Array.from({ length: Math.floor(nLayers / 2) }, (_, i) => 2 * i + 1)
    return odd.length > 0 ? odd : [0]
  }
  for (const l of layers)
    if (l >= nLayers)
      refuse(`option layers: layer ${l} does not exist (the model has ${nLayers} layers, 0..${nLayers - 1})`)
  if (layers.length === 0) refuse('option layers: choose at least one layer to upcycle')
  if (new Set(layers).size !== layers.length) refuse('option layers: a layer index is listed twice')
  return [...layers].sort((a, b) => a - b)
}

/** The target's `moe` field: options, else the target spec's moe, else the defaults; conflicts throw. */
export function resolveMoE(
  source: TransformerSpec,
  target: TransformerSpec,
  options: UpcycleOptions,
): MoESpec {
  const given = target.moe
  const pick = <K extends keyof typeof UPCYCLE_DEFAULTS>(key: K): number => {
    const o = options[key]
    if (o !== undefined && given && given[key] !== o)
      refuse(
        `option ${key}=${o} contradicts the target spec's moe.${key}=${given[key]}; drop the option or change the target spec`,
      )
    return o ?? given?.[key] ?? UPCYCLE_DEFAULTS[key]
  }
  const moe: MoESpec = {
    experts: pick('experts'),
    topK: pick('topK'),
    layers: [],
    capacityFactor: pick('capacityFactor'),
    evalCapacityFactor: pick('evalCapacityFactor'),
    auxLossWeight: pick('auxLossWeight'),
    zLossWeight: pick('zLossWeight'),
  }
  if (moe.topK > moe.experts)
    refuse(`topK ${moe.topK} exceeds the ${moe.experts} experts; choose topK ≤ experts`)
  if (options.layers !== undefined) {
    moe.layers = upcycledLayers(source.nLayers, options.layers)
    if (given && JSON.stringify(given.layers) !== JSON.stringify(moe.layers))
      refuse(
        `option layers ${JSON.stringify(moe.layers)} contradicts the target spec's moe.layers ${JSON.stringify(given.layers)}; drop the option or change the target spec`,
      )
  } else moe.layers = given ? [...given.layers] : upcycledLayers(source.nLayers)
  const g = resolveGranularity(source, target, options, moe)
  if (g > 1) moe.expertDFF = source.dFF / g
  return moe
}

/**
 * The granularity g: the option, else dFF / the target's moe.expertDFF, else 1. Refuses what
 * granular upcycling cannot keep lossless: g not dividing dFF, experts or topK.
 */
export function resolveGranularity(
  source: TransformerSpec,
  target: TransformerSpec,
  options: UpcycleOptions,
  moe: MoESpec,
): number {
  const F = source.dFF
  const width = target.moe?.expertDFF
  if (width !== undefined && F % width !== 0)
    refuse(
      `the target's moe.expertDFF ${width} does not divide the intermediate size dFF ${F}; granular upcycling cuts the dense MLP into equal shards: use a divisor of ${F}`,
    )
  const implied = width === undefined ? undefined : F / width
  const g = options.granularity ?? implied ?? 1
  if (implied !== undefined && g !== implied)
    refuse(
      `option granularity=${g} contradicts the target spec's moe.expertDFF=${width} (granularity ${implied}); drop one or set moe.expertDFF to ${F / g}`,
    )
  if (g === 1) return 1
  if (F % g !== 0)
    refuse(
      `option granularity: ${g} does not divide the intermediate size dFF ${F}; choose a divisor of ${F} (e.g. ${[2, 4, 8].filter((d) => F % d === 0).join(', ') || 1})`,
    )
  if (moe.experts % g !== 0)
    refuse(
      `option granularity: ${moe.experts} experts are not a multiple of granularity ${g} (groups of ${g} experts hold the ${g} shards and share a router column); set experts to a multiple of ${g}, e.g. ${g * Math.max(1, Math.round(moe.experts / g))}`,
    )
  if (moe.topK % g !== 0)
    refuse(
      `option granularity: topK ${moe.topK} is not a multiple of granularity ${g}, so a token would not get every shard of its router groups and the MLP would not be kept; set topK to a multiple of ${g}, e.g. ${g * Math.max(1, Math.round(moe.topK / g))}`,
    )
  return g
}

const SAME = [
  'family',
  'vocabSize',
  'maxSeqLen',
  'dModel',
  'nLayers',
  'nHeads',
  'headDim',
  'dFF',
  'norm',
  'normPlacement',
  'normEps',
  'activation',
  'bias',
  'tieEmbeddings',
] as const satisfies readonly (keyof TransformerSpec)[]

/** Throws GrowthError unless target is source plus MoE layers (the only change upcycling makes). */
export function checkUpcycle(
  source: TransformerSpec,
  target: TransformerSpec,
  options: UpcycleOptions,
): MoESpec {
  if (source.moe)
    refuse(
      `the source already has mixture-of-experts layers (${JSON.stringify(source.moe.layers)}); upcycling converts a dense model (grow MoE models with lemon)`,
    )
  const diff = specDifference(source, target, SAME)
  if (diff)
    refuse(
      `target ${diff.field} ${diff.target} differs from the source's ${diff.source}; upcycling only turns MLPs into experts and keeps everything else: grow with lemon first, then upcycle`,
    )
  const extras = [
    ['positional', source.positional ?? 'learned', target.positional ?? 'learned'],
    ['ropeTheta', source.ropeTheta ?? null, target.ropeTheta ?? null],
    ['nKVHeads', source.nKVHeads ?? null, target.nKVHeads ?? null],
    ['mlmHead', source.mlmHead ?? false, target.mlmHead ?? false],
    ['image', source.image ?? null, target.image ?? null],
  ] as const
  for (const [field, s, t] of extras)
    if (JSON.stringify(s) !== JSON.stringify(t))
      refuse(
        `target ${field} ${JSON.stringify(t)} differs from the source's ${JSON.stringify(s)}; upcycling keeps it (grow with lemon first, then upcycle)`,
      )
  return resolveMoE(source, target, options)
}

/** Komatsuzaki et al. continue the dense run: same peak learning rate, dense optimizer state resumed. */
export function upcycleSchedule(): ScheduleRecommendation {
  return {
    kind: 'cosine',
    peakLrScale: 1,
    warmupFraction: 0,
    decayFraction: 1,
    minLrRatio: 0.1,
    freshOptimizer: false,
    note: "sparse upcycling: continue with the dense run's peak learning rate and no warm-up; resume the dense optimizer moments when you have them (upcycleOptimizerState copies them into every expert)",
  }
}

/**
 * Builds the upcycled parameters from the role table: dense tensors copied; expert e of layer l
 * cut from layer l's MLP (shard e mod g, Drop-Upcycling's re-initialised units, noise); new
 * routers whose groups of g experts share a column.
 */
function upcycleParams(source: Model, spec: TransformerSpec, options: UpcycleOptions, random: SeededRandom) {
  const g = source.spec.dFF / expertDFF(spec)
  const params: Params = {}
  const dropped = new Map<string, number[]>()
  let written = 0
  try {
    for (const info of paramTable(spec)) {
      const size = info.shape.reduce((a, b) => a * b, 1)
      if (info.module === 'mlp.router') {
        written += size
        const [D, E] = info.shape
        params[info.name] = tf.tensor(groupedRouter(D, E, g, options.routerStd, random), info.shape)
        continue
      }
      if (info.expert === undefined) {
        params[info.name] = tf.clone(source.params[info.name])
        continue
      }
      written += size
      const e = info.expert
      const key = `${info.layer}.${e}`
      if (!dropped.has(key)) dropped.set(key, dropUnits(expertDFF(spec), options.drop ?? 0, random))
      const module = info.module.slice('mlp.'.length)
      const dense = source.params[`layers.${info.layer}.mlp.${module}.${info.kind}`]
      let data = expertParam(
        info,
        dense.dataSync() as Float32Array,
        { shard: e % g, granularity: g, dropped: dropped.get(key)! },
        random,
      )
      if (options.noiseStd > 0 && info.kind === 'weight') {
        const noise = random.normals(size, options.noiseStd)
        data = data.map((v, i) => v + noise[i])
      }
      params[info.name] = tf.tensor(data, info.shape)
    }
    validateParams(spec, params)
  } catch (e) {
    tf.dispose(Object.values(params))
    throw e
  }
  return { params, written, dropped }
}

/** Max |Δlogits| at the target's evaluation capacity (tokens may be dropped there, unlike core's verify). */
function evalCapacityDiff(source: Model, model: Model, seed: number): { diff: number; tokens: number } {
  const seqLen = Math.min(source.spec.maxSeqLen, 32)
  const inputs = randomInputs(source.spec, 2, seqLen, seed)
  try {
    const diff = tf.tidy(() => {
      const a = forward(source, inputs, { training: false })
      const b = forward(model, inputs, { training: false })
      return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]
    })
    return { diff, tokens: 2 * (source.spec.family === 'vit' ? source.spec.maxSeqLen : seqLen) }
  } finally {
    inputs.dispose()
  }
}

const upcycle = defineOperator({
  name: M,
  meta: {
    displayName: 'Sparse upcycling',
    papers: [
      {
        title: 'Sparse Upcycling: Training Mixture-of-Experts from Dense Checkpoints',
        authors: 'Komatsuzaki et al.',
        venue: 'ICLR',
        year: 2023,
        url: 'https://arxiv.org/abs/2212.05055',
      },
      {
        title: 'Drop-Upcycling: Training Sparse Mixture of Experts with Partial Re-initialization',
        authors: 'Nakamura et al.',
        venue: 'ICLR',
        year: 2025,
        url: 'https://arxiv.org/abs/2502.19261',
      },
      {
        title: 'Upcycling Large Language Models into Mixture of Experts',
        authors: 'He et al.',
        venue: 'arXiv',
        year: 2024,
        url: 'https://arxiv.org/abs/2410.07524',
      },
    ],
  },
  description:
    'Chosen dense MLPs become mixture-of-experts layers of identical experts with a new top-k router; lossless when no token is dropped',
  options: upcycleOptions,
  capabilities: capabilities('moe', 'functionPreserving'),
  check: (source, target, options) => {
    checkUpcycle(source, target, options)
  },
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    const moe = checkUpcycle(source.spec, target, options)
    validateParams(source.spec, source.params)
    const spec: TransformerSpec = { ...structuredClone(source.spec), moe }
    ctx.progress({ stage: 'upcycle: experts', step: 0, total: 1 })
    const { params, written, dropped } = upcycleParams(source, spec, options, ctx.random)
    const lossless = options.noiseStd === 0 && !(options.drop! > 0)
    const model = { spec, params }
    ctx.flops.add(written, 'growth')
    const seconds = (performance.now() - start) / 1000
    const measure = shouldVerify(options, spec)
    let diff: number | null = null
    let atEval: { diff: number; tokens: number } | null = null
    if (measure) {
      ctx.progress({ stage: 'upcycle: verify', step: 1, total: 1 })
      diff = maxAbsLogitDiff(source, model, { seed: ctx.seed })
      atEval = evalCapacityDiff(source, model, ctx.seed)
      if (lossless && !(diff < options.tolerance)) {
        tf.dispose(Object.values(params))
        throw new GrowthError(
          `${M}: the upcycled model's logits differ from the source's by ${diff} without token dropping (tolerance ${options.tolerance}); identical experts (or whole router groups of shards) with renormalised gates should be exact, please report this`,
        )
      }
    }
    return {
      model,
      moments: upcycleMomentMap(spec),
      report: {
        method: M,
        growthFlops: written,
        steps: 0,
        seconds,
        functionPreserving: lossless,
        maxAbsLogitDiff: diff,
        details: {
          moe,
          granularity: source.spec.dFF / expertDFF(spec),
          drop: options.drop ?? 0,
          droppedUnitsPerExpert: dropped.values().next().value?.length ?? 0,
          expertNoiseStd: options.noiseStd,
          routerStd: options.routerStd,
          addedParams: countParams(spec) - countParams(source.spec),
          ...(atEval ? { evalCapacityLogitDiff: atEval.diff, evalCapacityTokens: atEval.tokens } : {}),
        },
      },
      schedule: upcycleSchedule(),
    }
  },
})

export default upcycle
export { upcycleMomentMap, upcycleOptimizerState } from './optimizer-state.js'
export { upcycle }
