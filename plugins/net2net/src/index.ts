import {
  ARCHITECTURE_FIELDS,
  type AxisMoments,
  type AxisRole,
  assertMoELayerCopies,
  attnWidth,
  capabilities,
  defineOperator,
  GrowthError,
  type GrowthResult,
  type MomentMap,
  type ParamInfo,
  type Params,
  paramTable,
  replicaFactors as replicaGradientFactors,
  type SeededRandom,
  specDifference,
  type TransformerSpec,
  validateParams,
  widenedMomentRule,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

export const net2netOptions = z.strictObject({
  /** fpi: new units copy existing ones of the same layer (function preserving); aki: of the layer above (bert2BERT). */
  init: z.enum(['fpi', 'aki']).default('fpi'),
  /** identity: new layers start with zero output projections (function preserving, pre-norm); stack: copies of layer i mod L. */
  depth: z.enum(['identity', 'stack']).default('identity'),
  /** Which existing head / FFN unit each new one copies: seeded random (Net2Net) or cyclic (i mod n). */
  choice: z.enum(['random', 'cyclic']).default('random'),
  /**
   * Symmetry-breaking noise on the weights that read duplicated units, as a fraction of each
   * weight's RMS. Replicas get noise that sums to zero, so FPI stays function preserving while
   * the copies receive different gradients (exact copies would train identically). 0 = pure FPI.
   */
  symmetryNoise: z.number().min(0).max(1).default(0),
})
export type Net2NetOptions = z.infer<typeof net2netOptions>

/** Heads grow in number, never in size; grouped-query layouts are kept (and refused below). */
const SAME = [
  ...ARCHITECTURE_FIELDS,
  'headDim',
  'nKVHeads',
] as const satisfies readonly (keyof TransformerSpec)[]

export function checkNet2Net(
  source: TransformerSpec,
  target: TransformerSpec,
  options: Net2NetOptions,
): void {
  const diff = specDifference(source, target, SAME)
  if (diff)
    throw new GrowthError(
      `net2net keeps ${diff.field} (source ${diff.source}, target ${diff.target}); make them equal`,
    )
  if (source.nKVHeads !== undefined && source.nKVHeads !== source.nHeads)
    throw new GrowthError('net2net does not grow grouped-query attention (nKVHeads); use lemon')
  const grow = (f: 'dModel' | 'nHeads' | 'dFF' | 'nLayers') => {
    if (target[f] < source[f])
      throw new GrowthError(
        `net2net only grows: target ${f} ${target[f]} is smaller than the source's ${source[f]}`,
      )
  }
  for (const f of ['dModel', 'nHeads', 'dFF', 'nLayers'] as const) grow(f)
  if (target.dModel % source.dModel !== 0)
    throw new GrowthError(
      `net2net duplicates every residual channel the same number of times so LayerNorm statistics are unchanged: dModel must grow by a whole factor (${source.dModel} → ${target.dModel} is ×${(target.dModel / source.dModel).toFixed(2)}); use lemon for any ratio`,
    )
  if (options.depth === 'identity' && target.nLayers > source.nLayers && source.normPlacement === 'post')
    throw new GrowthError(
      'net2net depth "identity" needs pre-norm (a post-norm layer re-normalises, so a zero-output layer is not an identity); use --option depth=stack, or lemon for lossless post-norm depth growth',
    )
  assertMoELayerCopies('net2net', source, target, (i) => i % source.nLayers)
}

/** Source unit for each target unit: identity for the first n1, then `choice` for the new ones. */
export function unitMap(
  n1: number,
  n2: number,
  choice: 'random' | 'cyclic' | 'uniform',
  random: SeededRandom,
): Int32Array {
  const idx = new Int32Array(n2)
  for (let j = 0; j < n2; j++) idx[j] = j < n1 || choice !== 'random' ? j % n1 : random.int(n1)
  return idx
}

/** For each target unit, how many target units copy the same source unit (the FPI divisor). */
export function replicaCounts(idx: Int32Array, n1: number): Float32Array {
  const c = new Float32Array(n1)
  for (const i of idx) c[i]++
  return Float32Array.from(idx, (i) => c[i])
}

interface AxisMap {
  idx: Int32Array
  counts: Float32Array
  /** First target index that is a new unit. */
  n1: number
}

function expandHeads(heads: Int32Array, headDim: number): Int32Array {
  const out = new Int32Array(heads.length * headDim)
  heads.forEach((h, j) => {
    for (let d = 0; d < headDim; d++) out[j * headDim + d] = h * headDim + d
  })
  return out
}

/**
 * Widens one parameter (rank 1 or 2) in a single pass over typed arrays: every grown axis is
 * read through its unit map, and the input axis of a weight is divided by the replica counts so
 * duplicated units' contributions sum to the original. With `upper` (AKI), entries on a new unit
 * of an `akiRoles` axis are read from the layer above instead.
 */
function widen(
  t: tf.Tensor,
  info: ParamInfo,
  maps: Partial<Record<string, AxisMap>>,
  upper?: { tensor: tf.Tensor; roles: readonly string[] },
  noise?: { random: SeededRandom; scale: number },
): tf.Tensor {
  if (info.axes.every((role) => !maps[role])) return t.clone()
  const shape = t.shape.length === 1 ? [1, t.shape[0]] : t.shape
  if (shape.length !== 2) throw new GrowthError(`net2net: unexpected rank ${t.shape.length} for ${info.name}`)
  const axes = t.shape.length === 1 ? [undefined, info.axes[0]] : info.axes
  const axis = (a: number) => {
    const m = axes[a] ? maps[axes[a]!] : undefined
    const idx = m ? m.idx : Int32Array.from({ length: shape[a] }, (_, i) => i)
    const isNew =
      upper && m && upper.roles.includes(axes[a]!)
        ? Uint8Array.from(idx, (_, j) => (j >= m.n1 ? 1 : 0))
        : new Uint8Array(idx.length)
    const divide = m && info.kind === 'weight' && a === 0 && t.shape.length === 2
    return { idx, isNew, counts: divide ? m.counts : null }
  }
  const rows = axis(0)
  const cols = axis(1)
  const own = t.dataSync() as Float32Array
  const up = upper ? (upper.tensor.dataSync() as Float32Array) : own
  const C1 = shape[1]
  const R2 = rows.idx.length
  const C2 = cols.idx.length
  const out = new Float32Array(R2 * C2)
  for (let i = 0; i < R2; i++) {
    const base = rows.idx[i] * C1
    const inv = rows.counts ? 1 / rows.counts[i] : 1
    for (let j = 0; j < C2; j++) {
      const from = rows.isNew[i] || cols.isNew[j] ? up : own
      out[i * C2 + j] = from[base + cols.idx[j]] * inv
    }
  }
  if (noise && noise.scale > 0 && rows.counts)
    addZeroSumNoise(out, rows.idx, C2, rms(own) * noise.scale, noise.random)
  return tf.tensor(out, t.shape.length === 1 ? [C2] : [R2, C2], t.dtype)
}

function rms(values: Float32Array): number {
  let sum = 0
  for (const v of values) sum += v * v
  return Math.sqrt(sum / Math.max(1, values.length))
}

/**
 * Adds N(0, std²) noise to rows that are replicas of the same source row, minus its mean over
 * the replicas, so every group's rows still sum to the undivided source row. Unique rows get none.
 */
function addZeroSumNoise(
  out: Float32Array,
  rowIdx: Int32Array,
  cols: number,
  std: number,
  random: SeededRandom,
) {
  const groups = new Map<number, number[]>()
  rowIdx.forEach((r, i) => {
    const group = groups.get(r)
    if (group) group.push(i)
    else groups.set(r, [i])
  })
  for (const rows of groups.values()) {
    if (rows.length < 2) continue
    const n = random.normals(rows.length * cols, std)
    for (let j = 0; j < cols; j++) {
      let mean = 0
      for (let g = 0; g < rows.length; g++) mean += n[g * cols + j]
      mean /= rows.length
      for (let g = 0; g < rows.length; g++) out[rows[g] * cols + j] += n[g * cols + j] - mean
    }
  }
}

/** Only heads and FFN units get AKI's "from the layer above": residual channels are shared by all layers. */
const AKI_ROLES = ['attn', 'ffn'] as const

/** The tensor that feeds a tied output projection; scaled by 1/k so the tied logits stay exact. */
function tiedHeadInput(spec: TransformerSpec): string | null {
  if (!spec.tieEmbeddings || spec.family === 'vit') return null
  if (spec.mlmHead) return 'head.norm'
  return spec.normPlacement === 'pre' ? 'norm' : `layers.${spec.nLayers - 1}.norm2`
}

/**
 * How Adam's moments follow a Net2Net growth. FPI: the stream's k copies each receive 1/k of the
 * source's stream gradient, a unit copied n times (its reading weights divided by n) 1/n of the
 * source unit's gradient, and a weight's inputs are exact copies; so each grown weight's gradient
 * is its source's times the factor of its output side (the norm before a tied head, read
 * undivided, keeps factor 1). Exact with symmetryNoise 0. AKI's new units (copied from the layer
 * above, not function preserving) start at zero moments. New identity layers start at zero
 * (zero output projections make every other gradient in them zero); stacked new layers copy the
 * moments of the layer they copy, as stacking does.
 */
export function net2netMomentMap(
  source: TransformerSpec,
  target: TransformerSpec,
  options: Net2NetOptions,
  units: { residual: Int32Array; attn: Int32Array; ffn: Int32Array },
): MomentMap {
  const L1 = source.nLayers
  const axis = (idx: Int32Array, n1: number, aki: boolean): AxisMoments => ({
    index: aki ? idx.map((s, j) => (j >= n1 ? -1 : s)) : idx,
    outputScale: replicaGradientFactors(idx),
  })
  const axes = (aki: boolean): Partial<Record<AxisRole, AxisMoments>> => ({
    residual: axis(units.residual, source.dModel, false),
    attn: axis(units.attn, attnWidth(source), aki),
    ffn: axis(units.ffn, source.dFF, aki),
  })
  const tied = tiedHeadInput(target)
  const map: MomentMap = {}
  for (const info of paramTable(target)) {
    const l = layerOf(info.name)
    if (l !== null && l >= L1 && options.depth === 'identity') {
      map[info.name] = {}
      continue
    }
    const from = l === null ? info.name : info.name.replace(/^layers\.\d+\./, `layers.${l % L1}.`)
    const full = tied !== null && (info.name === `${tied}.weight` || info.name === `${tied}.bias`)
    map[info.name] = widenedMomentRule(info, from, axes(options.init === 'aki' && l !== null), full)
  }
  return map
}

function layerOf(name: string): number | null {
  const m = /^layers\.(\d+)\./.exec(name)
  return m ? Number(m[1]) : null
}

const net2net = defineOperator({
  name: 'net2net',
  meta: {
    displayName: 'Net2Net / bert2BERT',
    papers: [
      {
        title: 'Net2Net: Accelerating Learning via Knowledge Transfer',
        authors: 'Chen et al.',
        venue: 'ICLR',
        year: 2016,
        url: 'https://arxiv.org/abs/1511.05641',
      },
      {
        title: 'bert2BERT: Towards Reusable Pretrained Language Models',
        authors: 'Chen et al.',
        venue: 'ACL',
        year: 2022,
        url: 'https://arxiv.org/abs/2110.07143',
      },
    ],
  },
  description:
    'Width growth by duplicating residual channels, heads and FFN units (FPI, function preserving; or AKI), depth by identity or stacked layers',
  options: net2netOptions,
  capabilities: capabilities('width', 'depth', 'heads', 'ffn', 'functionPreserving'),
  check: checkNet2Net,
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    const s = source.spec
    checkNet2Net(s, target, options)
    validateParams(s, source.params)
    const k = target.dModel / s.dModel
    const headDim = attnWidth(s) / s.nHeads
    const heads = unitMap(s.nHeads, target.nHeads, options.choice, ctx.random)
    const ffn = unitMap(s.dFF, target.dFF, options.choice, ctx.random)
    const residual = unitMap(s.dModel, target.dModel, 'uniform', ctx.random)
    const attnIdx = expandHeads(heads, headDim)
    const maps: Partial<Record<string, AxisMap>> = {
      residual: { idx: residual, counts: replicaCounts(residual, s.dModel), n1: s.dModel },
      attn: { idx: attnIdx, counts: replicaCounts(attnIdx, attnWidth(s)), n1: attnWidth(s) },
      ffn: { idx: ffn, counts: replicaCounts(ffn, s.dFF), n1: s.dFF },
    }
    // Widen the source-shaped model first (same depth), then deepen.
    const wideSpec: TransformerSpec = { ...target, nLayers: s.nLayers }
    const wide: Params = {}
    for (const info of paramTable(s)) {
      const t = source.params[info.name]
      const l = layerOf(info.name)
      const usesAki =
        options.init === 'aki' && l !== null && info.axes.some((r) => r === 'attn' || r === 'ffn')
      // A MoE layer above a dense one (or the reverse) has no matching tensor: use the layer's own.
      const upperName = info.name.replace(
        /^layers\.\d+\./,
        `layers.${Math.min((l ?? 0) + 1, s.nLayers - 1)}.`,
      )
      const w = widen(
        t,
        info,
        maps,
        usesAki ? { tensor: source.params[upperName] ?? t, roles: AKI_ROLES } : undefined,
        { random: ctx.random, scale: options.symmetryNoise },
      )
      wide[info.name] = w
    }
    ctx.progress({ stage: 'net2net: widen', step: 1, total: 2 })
    // Depth: new layer i copies wide layer i mod L (stack) or starts as an identity.
    const params: Params = {}
    const L1 = s.nLayers
    const zeroed: string[] = []
    for (const info of paramTable(target)) {
      const l = layerOf(info.name)
      const from = l === null ? info.name : info.name.replace(/^layers\.\d+\./, `layers.${l % L1}.`)
      const src = wide[from]
      const isOutput = /\.attn\.o\.(weight|bias)$/.test(info.name) || /\.fc2\.(weight|bias)$/.test(info.name)
      if (l !== null && l >= L1 && options.depth === 'identity' && isOutput) {
        params[info.name] = tf.zerosLike(src)
        zeroed.push(info.name)
      } else params[info.name] = src.clone()
    }
    tf.dispose(Object.values(wide))
    // A tied head reads the duplicated channels k times: scale the norm that feeds it by 1/k.
    const tiedInput = tiedHeadInput(target)
    if (k > 1 && tiedInput !== null)
      for (const name of [`${tiedInput}.weight`, `${tiedInput}.bias`])
        if (params[name]) {
          const scaled = tf.div(params[name], k)
          params[name].dispose()
          params[name] = scaled
        }
    ctx.progress({ stage: 'net2net: deepen', step: 2, total: 2 })
    const preserving = options.init === 'fpi' && (options.depth === 'identity' || target.nLayers === L1)
    return {
      model: { spec: structuredClone(target), params },
      moments: net2netMomentMap(s, target, options, { residual, attn: attnIdx, ffn }),
      report: {
        method: 'net2net',
        growthFlops: 0,
        steps: 0,
        seconds: (performance.now() - start) / 1000,
        functionPreserving: preserving,
        maxAbsLogitDiff: null,
        details: {
          init: options.init,
          depth: options.depth,
          widthFactor: k,
          headMap: Array.from(heads),
          zeroedForIdentity: zeroed.length,
          wideSpec: { dModel: wideSpec.dModel, nHeads: wideSpec.nHeads, dFF: wideSpec.dFF },
          note: preserving
            ? 'FPI: every new unit copies one of its layer, and the weights reading the copies are divided by the replica count; new layers have zero output projections'
            : [
                options.init === 'aki'
                  ? 'AKI: new heads/FFN units copy the layer above, so the outputs of the widened layers change (not function preserving)'
                  : null,
                options.depth === 'stack' && target.nLayers > L1
                  ? 'depth=stack: the new layers are full copies, which add to the residual stream (not function preserving)'
                  : null,
              ]
                .filter(Boolean)
                .join('; '),
        },
      },
    }
  },
})

export default net2net
export { net2net }
