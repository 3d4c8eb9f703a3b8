import {
  attnWidth,
  defineOperator,
  GrowthError,
  type GrowthResult,
  moeLayerMismatch,
  type ParamInfo,
  type Params,
  paramTable,
  type SeededRandom,
  specDifference,
  type TransformerSpec,
  validateParams,
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
})
export type Net2NetOptions = z.infer<typeof net2netOptions>

const SAME = [
  'family',
  'vocabSize',
  'maxSeqLen',
  'activation',
  'norm',
  'normPlacement',
  'normEps',
  'bias',
  'tieEmbeddings',
  'positional',
  'mlmHead',
  'image',
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
  const moe = moeLayerMismatch(source, target, (i) => i % source.nLayers)
  if (moe)
    throw new GrowthError(
      `target layer ${moe.layer} copies source layer ${moe.sourceLayer}, but only one of them is a mixture-of-experts layer; set the target's moe.layers to [${moe.needed.join(', ')}]`,
    )
  if (
    source.moe &&
    target.moe &&
    JSON.stringify({ ...source.moe, layers: [] }) !== JSON.stringify({ ...target.moe, layers: [] })
  )
    throw new GrowthError(
      'net2net keeps the experts as they are: the target moe settings must equal the source',
    )
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
 * Widens one parameter: every grown axis is gathered through its unit map; the input axis of a
 * weight is divided by the replica counts, so duplicated units' contributions sum to the original.
 * With `upper` (AKI), new units are read from the layer above instead.
 */
function widen(
  t: tf.Tensor,
  info: ParamInfo,
  maps: Partial<Record<string, AxisMap>>,
  upper?: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    let own = t
    let up = upper
    info.axes.forEach((role, axis) => {
      const m = maps[role]
      if (!m) return
      const idx = tf.tensor1d(m.idx, 'int32')
      const scale = (x: tf.Tensor) => {
        if (!(info.kind === 'weight' && axis === 0)) return x
        const shape = x.shape.map((_, a) => (a === axis ? m.idx.length : 1))
        return tf.div(x, tf.tensor(m.counts, shape))
      }
      own = scale(tf.gather(own, idx, axis))
      if (up) {
        const upG = scale(tf.gather(up, idx, axis))
        const isNew = Float32Array.from(m.idx, (_, j) => (j >= m.n1 ? 1 : 0))
        const shape = own.shape.map((_, a) => (a === axis ? m.idx.length : 1))
        const mask = tf.tensor(isNew, shape)
        own = tf.add(tf.mul(upG, mask), tf.mul(own, tf.sub(1, mask)))
        up = upG
      }
    })
    return own === t ? t.clone() : own
  })
}

/** The tensor that feeds a tied output projection; scaled by 1/k so the tied logits stay exact. */
function tiedHeadInput(spec: TransformerSpec): string | null {
  if (!spec.tieEmbeddings || spec.family === 'vit') return null
  if (spec.mlmHead) return 'head.norm'
  return spec.normPlacement === 'pre' ? 'norm' : `layers.${spec.nLayers - 1}.norm2`
}

function layerOf(name: string): number | null {
  const m = /^layers\.(\d+)\./.exec(name)
  return m ? Number(m[1]) : null
}

const net2net = defineOperator({
  name: 'net2net',
  description:
    'Net2Net / bert2BERT: width growth by duplicating residual channels, heads and FFN units (FPI, function preserving; or AKI), depth by identity or stacked layers',
  options: net2netOptions as unknown as z.ZodType<Net2NetOptions>,
  capabilities: {
    width: true,
    depth: true,
    heads: true,
    ffn: true,
    moe: false,
    learned: false,
    functionPreserving: true,
  },
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
    // Only the heads and FFN units get AKI's "from the layer above": residual channels are shared by all layers.
    const akiMaps = { attn: maps.attn, ffn: maps.ffn }
    // Widen the source-shaped model first (same depth), then deepen.
    const wideSpec: TransformerSpec = { ...target, nLayers: s.nLayers }
    const wide: Params = {}
    for (const info of paramTable(s)) {
      const t = source.params[info.name]
      const l = layerOf(info.name)
      const usesAki =
        options.init === 'aki' && l !== null && info.axes.some((r) => r === 'attn' || r === 'ffn')
      let w: tf.Tensor
      if (usesAki) {
        const upperName = info.name.replace(/^layers\.\d+\./, `layers.${Math.min(l! + 1, s.nLayers - 1)}.`)
        const base = widen(t, info, { residual: maps.residual })
        const upperBase = widen(source.params[upperName], info, { residual: maps.residual })
        w = widen(base, { ...info, axes: info.axes }, akiMaps, upperBase)
        tf.dispose([base, upperBase])
      } else {
        w = widen(t, info, maps)
      }
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
        },
      },
    }
  },
})

export default net2net
export { net2net }
