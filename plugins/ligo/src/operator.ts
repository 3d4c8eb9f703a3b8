import {
  type AxisRole,
  type DepthInit,
  depthLayout,
  GrowthError,
  type LearnedParametrisation,
  type ModuleKind,
  type ParamInfo,
  type Params,
  paramTable,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/**
 * Width factors: 'kronecker' learns every entry of each expansion matrix (the paper's form);
 * 'block' learns only the new rows C of [I; C] (the official code's form), the identity stays fixed.
 */
export type LigoForm = 'kronecker' | 'block'
/**
 * 'preserve': the function-preserving start (see `preservingWidth`); 'identity': [I; small
 * random] rows; 'duplicate': Net2Net-like copies, row i is one-hot at i mod n1 (not rescaled).
 */
export type WidthInit = 'preserve' | 'identity' | 'duplicate'
export type { DepthInit }

export interface LigoSettings {
  form: LigoForm
  widthInit: WidthInit
  depthInit: DepthInit
  /**
   * 'identity': target layers that repeat a source layer already placed start with zero
   * attention-output and fc2 mixing rows (they add nothing to the residual stream); 'copy':
   * every target layer is a full copy (stacking/interpolation).
   */
  newLayers: 'identity' | 'copy'
  /** Std of the random entries added at initialisation (0: the exact initialisation). */
  initNoise: number
}

/** Modules whose per-layer tensors are mixed over depth, each with its own L2×L1 matrix. */
export const DEPTH_MODULES: ModuleKind[] = [
  'attn.q',
  'attn.k',
  'attn.v',
  'attn.o',
  'norm1',
  'norm2',
  'mlp.fc1',
  'mlp.gate',
  'mlp.fc2',
]

/** Modules that write into the residual stream: zero in a new identity layer. */
const RESIDUAL_WRITERS = new Set<ModuleKind>(['attn.o', 'mlp.fc2'])

/**
 * Which width matrix expands an axis: the residual stream shares E; attention axes use the
 * layer's B_Q, B_K or B_V (the attention output's input reuses B_V); the FFN axis uses the
 * layer's B_fc1 (SwiGLU's gate output and FFN-out's input reuse it). Other axes (vocabulary,
 * positions, patches, classes) are never expanded.
 */
export function widthKey(role: AxisRole, module: ModuleKind, layer: number | null): string | null {
  if (role === 'residual') return 'E'
  if (role === 'attn') {
    if (module === 'attn.q') return `q.${layer}`
    if (module === 'attn.k') return `k.${layer}`
    return `v.${layer}`
  }
  if (role === 'ffn') return `fc1.${layer}`
  return null
}

interface MatrixSpec {
  key: string
  /** Target size (rows). */
  n2: number
  /** Source size (columns). */
  n1: number
}

function widthMatrices(source: TransformerSpec, target: TransformerSpec): MatrixSpec[] {
  const out: MatrixSpec[] = [{ key: 'E', n2: target.dModel, n1: source.dModel }]
  const a1 = source.nHeads * source.headDim
  const a2 = target.nHeads * target.headDim
  for (let l = 0; l < source.nLayers; l++) {
    for (const k of ['q', 'k', 'v']) out.push({ key: `${k}.${l}`, n2: a2, n1: a1 })
    out.push({ key: `fc1.${l}`, n2: target.dFF, n1: source.dFF })
  }
  return out
}

/** The initial n2×n1 width matrix of a fixed method ('identity' or 'duplicate') as a flat row-major array. */
export function initWidth(
  n2: number,
  n1: number,
  init: 'identity' | 'duplicate',
  noise: number,
  rng: SeededRandom,
): Float32Array {
  const m = new Float32Array(n2 * n1)
  for (let i = 0; i < n2; i++) {
    const one = init === 'identity' ? (i < n1 ? i : -1) : i % n1
    for (let j = 0; j < n1; j++) {
      const isNew = i >= n1
      const random = init === 'duplicate' || isNew ? noise * rng.normal() : 0
      m[i * n1 + j] = (j === one ? 1 : 0) + random
    }
  }
  return m
}

/** Orthonormalises the columns of a row-major rows×cols matrix in place (modified Gram-Schmidt, float64). */
function orthonormalColumns(m: Float64Array, rows: number, cols: number): void {
  for (let j = 0; j < cols; j++) {
    for (let k = 0; k < j; k++) {
      let dot = 0
      for (let i = 0; i < rows; i++) dot += m[i * cols + j] * m[i * cols + k]
      for (let i = 0; i < rows; i++) m[i * cols + j] -= dot * m[i * cols + k]
    }
    let norm = 0
    for (let i = 0; i < rows; i++) norm += m[i * cols + j] ** 2
    norm = Math.sqrt(norm)
    for (let i = 0; i < rows; i++) m[i * cols + j] = norm > 1e-12 ? m[i * cols + j] / norm : 0
  }
}

/**
 * `count` random unit vectors of length n orthogonal to every column of the n×d matrix `w`
 * (row-major), i.e. in the left null space of w: b·w = 0. Empty rows (zeros) when w has no
 * left null space (d ≥ n at full rank).
 */
export function leftNullVectors(
  w: Float32Array,
  n: number,
  d: number,
  count: number,
  rng: SeededRandom,
): Float64Array {
  const basis = Float64Array.from(w)
  orthonormalColumns(basis, n, d)
  const out = new Float64Array(count * n)
  for (let c = 0; c < count; c++) {
    const g = Float64Array.from({ length: n }, () => rng.normal())
    for (let j = 0; j < d; j++) {
      let dot = 0
      for (let i = 0; i < n; i++) dot += g[i] * basis[i * d + j]
      for (let i = 0; i < n; i++) g[i] -= dot * basis[i * d + j]
    }
    let norm = 0
    for (let i = 0; i < n; i++) norm += g[i] ** 2
    norm = Math.sqrt(norm)
    // A projection that leaves only rounding noise means there is no null space.
    const keep = norm > 1e-3 * Math.sqrt(n)
    for (let i = 0; i < n; i++) out[c * n + i] = keep ? g[i] / norm : 0
  }
  return out
}

/**
 * The function-preserving width matrices (target rows × source columns), where LiGO's tied form
 * can express them (see the README's table for what it cannot):
 * - E (residual): each source unit copied k = D2/D1 times, scaled 1/√k. Its columns are
 *   orthonormal (Eᵀ·E = I, so every linear reading the residual sees x·Eᵀ·E = x) and it maps
 *   the all-ones vector to a multiple of itself, so LayerNorm/RMSNorm of x·Eᵀ is LN(x)·Eᵀ.
 * - B_Q, B_K: target head h reads source head h mod H1 (new heads are copies, same scores);
 *   B_Q is scaled by √(hd2/hd1) so that the softmax scale 1/√hd2 of a wider head keeps the logits.
 * - B_V: the copies of a source head read it through a random matrix with orthonormal columns:
 *   the attention output's input reuses B_V, and B_Vᵀ·B_V = I makes o see the source's values,
 *   while the copies differ (their fitting gradients are not tied).
 * - B_fc1: the source's units as they are, new units in the left null space of the layer's fc2
 *   (b·W_fc2 = 0): the reused B_fc1 makes their fc2 rows exactly zero, their fc1 columns not,
 *   so they add nothing yet still learn.
 */
export function preservingWidth(
  spec: MatrixSpec,
  source: TransformerSpec,
  target: TransformerSpec,
  sourceParams: Params,
  rng: SeededRandom,
): Float32Array {
  const { key, n2, n1 } = spec
  const m = new Float32Array(n2 * n1)
  if (key === 'E') {
    const copies = new Array(n1).fill(0)
    for (let i = 0; i < n2; i++) copies[i % n1]++
    for (let i = 0; i < n2; i++) m[i * n1 + (i % n1)] = 1 / Math.sqrt(copies[i % n1])
    return m
  }
  const [kind, layer] = key.split('.')
  if (kind === 'fc1') {
    for (let i = 0; i < n1; i++) m[i * n1 + i] = 1
    const w = sourceParams[`layers.${layer}.mlp.fc2.weight`].dataSync() as Float32Array
    const nulls = leftNullVectors(w, n1, source.dModel, n2 - n1, rng)
    for (let i = n1; i < n2; i++) for (let j = 0; j < n1; j++) m[i * n1 + j] = nulls[(i - n1) * n1 + j]
    return m
  }
  const H1 = source.nHeads
  const hd1 = source.headDim
  const hd2 = target.headDim
  const headOf = (h2: number) => h2 % H1
  if (kind === 'q' || kind === 'k') {
    const scale = kind === 'q' ? Math.sqrt(hd2 / hd1) : 1
    for (let h2 = 0; h2 < target.nHeads; h2++)
      for (let u = 0; u < Math.min(hd1, hd2); u++) m[(h2 * hd2 + u) * n1 + headOf(h2) * hd1 + u] = scale
    return m
  }
  // v: per source head, one random orthonormal block over all the rows of its copies.
  for (let h = 0; h < H1; h++) {
    const copies = Array.from({ length: target.nHeads }, (_, h2) => h2).filter((h2) => headOf(h2) === h)
    const rows = copies.flatMap((h2) => Array.from({ length: Math.min(hd1, hd2) }, (_, u) => h2 * hd2 + u))
    const block = Float64Array.from({ length: rows.length * hd1 }, () => rng.normal())
    orthonormalColumns(block, rows.length, hd1)
    rows.forEach((r, i) => {
      for (let u = 0; u < hd1; u++) m[r * n1 + h * hd1 + u] = block[i * hd1 + u]
    })
  }
  return m
}

/**
 * The initial L2×L1 depth matrix: one-hot rows (stacking or interpolation), with the rows of
 * repeated layers zeroed for residual writers when `identityNewLayers`; plus noise, copy rows
 * renormalised to sum 1.
 */
export function initDepth(
  L2: number,
  L1: number,
  init: DepthInit,
  noise: number,
  rng: SeededRandom,
  zeroRepeats = false,
): Float32Array {
  const m = new Float32Array(L2 * L1)
  const { from, first } = depthLayout(L1, L2, init)
  for (let i = 0; i < L2; i++) {
    const zero = zeroRepeats && !first[i]
    let sum = 0
    for (let j = 0; j < L1; j++) {
      const v = (j === from[i] && !zero ? 1 : 0) + noise * rng.normal()
      m[i * L1 + j] = v
      sum += v
    }
    if (!zero) for (let j = 0; j < L1; j++) m[i * L1 + j] /= sum
  }
  return m
}

export interface LigoOperator extends LearnedParametrisation {
  source: TransformerSpec
  target: TransformerSpec
  settings: LigoSettings
  /** Whether any width axis grows (dModel, attention width, dFF); else width matrices are not used. */
  growsWidth: boolean
  /** Whether nLayers grows; else depth mixing is not used. */
  growsDepth: boolean
}

function sameWidth(s: TransformerSpec, t: TransformerSpec): boolean {
  return s.dModel === t.dModel && s.nHeads * s.headDim === t.nHeads * t.headDim && s.dFF === t.dFF
}

/**
 * Builds the LiGO operator, initialised as the settings say (deterministic for a seed). The
 * source weights are read only by the function-preserving width initialisation (B_fc1's new
 * rows lie in the left null space of each layer's fc2).
 */
export function createLigo(
  source: TransformerSpec,
  target: TransformerSpec,
  sourceParams: Params | null,
  settings: LigoSettings,
  seed: number,
): LigoOperator {
  const rng = new SeededRandom(seed)
  const growsWidth = !sameWidth(source, target)
  const growsDepth = source.nLayers !== target.nLayers
  const variables: Record<string, tf.Variable> = {}
  const mats = growsWidth ? widthMatrices(source, target) : []
  const sizes = new Map(mats.map((m) => [m.key, m]))
  const noise = settings.initNoise
  for (const m of mats) {
    let full: Float32Array
    if (settings.widthInit === 'preserve') {
      if (!sourceParams)
        throw new GrowthError('ligo: the function-preserving initialisation needs the source weights')
      full = preservingWidth(m, source, target, sourceParams, rng)
      if (noise > 0) for (let i = 0; i < full.length; i++) full[i] += noise * rng.normal()
    } else full = initWidth(m.n2, m.n1, settings.widthInit, noise, rng)
    if (settings.form === 'kronecker') {
      variables[m.key] = tf.tidy(() => tf.variable(tf.tensor2d(full, [m.n2, m.n1])))
    } else if (m.n2 > m.n1) {
      const c = full.slice(m.n1 * m.n1)
      // [I; C] keeps the identity: E and B_V cannot take their rescaled preserving form here.
      if (settings.widthInit === 'preserve' && (m.key === 'E' || m.key.startsWith('v.'))) c.fill(0)
      variables[`${m.key}.C`] = tf.tidy(() => tf.variable(tf.tensor2d(c, [m.n2 - m.n1, m.n1])))
    }
  }
  const L1 = source.nLayers
  const L2 = target.nLayers
  if (growsDepth) {
    const present = new Set(paramTable(source).map((p) => p.module))
    for (const mod of DEPTH_MODULES) {
      if (!present.has(mod)) continue
      const zeroRepeats = settings.newLayers === 'identity' && RESIDUAL_WRITERS.has(mod)
      const w = initDepth(L2, L1, settings.depthInit, noise, rng, zeroRepeats)
      variables[`depth.${mod}`] = tf.tidy(() => tf.variable(tf.tensor2d(w, [L2, L1])))
    }
  }

  const matrix = (key: string): tf.Tensor2D => {
    if (settings.form === 'kronecker') return variables[key] as tf.Tensor2D
    const { n1, n2 } = sizes.get(key)!
    const eye = tf.eye(n1)
    return n2 > n1 ? (tf.concat([eye, variables[`${key}.C`]], 0) as tf.Tensor2D) : eye
  }

  const sourceTable = paramTable(source)
  const targetTable = paramTable(target)

  const expandWidth = (info: ParamInfo, w: tf.Tensor): tf.Tensor => {
    if (!growsWidth) return w
    if (info.shape.length === 1) {
      const key = widthKey(info.axes[0], info.module, info.layer)
      return key ? tf.matMul(matrix(key), w.reshape([-1, 1])).reshape([-1]) : w
    }
    const keyIn = widthKey(info.axes[0], info.module, info.layer)
    const keyOut = widthKey(info.axes[1], info.module, info.layer)
    let x = w as tf.Tensor2D
    if (keyOut) x = tf.matMul(x, matrix(keyOut), false, true)
    if (keyIn) x = tf.matMul(matrix(keyIn), x)
    return x
  }

  const materialise = (sourceParams: Params): Params => {
    const widened: Params = {}
    for (const info of sourceTable) widened[info.name] = expandWidth(info, sourceParams[info.name])
    const out: Params = {}
    const groups = new Map<string, ParamInfo[]>()
    for (const info of targetTable) {
      if (info.layer === null) {
        out[info.name] = widened[info.name]
        continue
      }
      const suffix = info.name.slice(`layers.${info.layer}.`.length)
      const list = groups.get(suffix) ?? []
      list.push(info)
      groups.set(suffix, list)
    }
    for (const [suffix, infos] of groups) {
      if (!growsDepth) {
        for (const info of infos) out[info.name] = widened[info.name]
        continue
      }
      const module = infos[0].module
      const shape = infos[0].shape
      const n = shape.reduce((a, b) => a * b, 1)
      const stacked = tf.stack(
        Array.from({ length: L1 }, (_, j) => widened[`layers.${j}.${suffix}`].reshape([n])),
      ) as tf.Tensor2D
      const mixed = tf.matMul(variables[`depth.${module}`] as tf.Tensor2D, stacked)
      const rows = tf.split(mixed, L2, 0)
      for (const info of infos) out[info.name] = rows[info.layer!].reshape(shape)
    }
    // Unexpanded tensors would alias the source's: the target owns fresh copies.
    const sources = new Set(Object.values(sourceParams))
    for (const [k, t] of Object.entries(out)) if (sources.has(t)) out[k] = tf.clone(t)
    return out
  }

  // FLOPs of the materialisation (forward) and of its backward pass to the variables: a product
  // with a constant operand (a source weight) needs one gradient, a product of two variable-
  // dependent operands two.
  let flops = 0
  let gradientFlops = 0
  const product = (f: number, bothVary: boolean) => {
    flops += f
    gradientFlops += bothVary ? 2 * f : f
  }
  if (growsWidth)
    for (const info of sourceTable) {
      const key0 = widthKey(info.axes[0], info.module, info.layer)
      const grown = (key: string | null, n: number) => (key ? sizes.get(key)!.n2 : n)
      if (info.shape.length === 1) {
        if (key0) product(2 * grown(key0, 0) * info.shape[0], false)
        continue
      }
      const key1 = widthKey(info.axes[1], info.module, info.layer)
      const [a1, b1] = info.shape
      const b2 = grown(key1, b1)
      if (key1) product(2 * a1 * b1 * b2, false)
      if (key0) product(2 * grown(key0, a1) * a1 * b2, key1 !== null)
    }
  if (growsDepth)
    for (const info of targetTable)
      if (info.layer !== null) product(2 * L1 * info.shape.reduce((a, b) => a * b, 1), growsWidth)

  return {
    source,
    target,
    settings,
    growsWidth,
    growsDepth,
    variables,
    parameterCount: Object.values(variables).reduce((n, v) => n + v.size, 0),
    materialiseFlops: flops,
    gradientFlops,
    materialise,
    details: {
      growsWidth,
      growsDepth,
      form: settings.form,
      widthInit: settings.widthInit,
      depthInit: settings.depthInit,
      newLayers: settings.newLayers,
    },
    dispose: () => {
      for (const v of Object.values(variables)) v.dispose()
    },
  }
}
