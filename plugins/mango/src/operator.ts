import {
  type DepthInit,
  depthLayout,
  GrowthError,
  type LearnedParametrisation,
  type ModuleKind,
  type Params,
  paramTable,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { bondRanks, contractRing, type RingDims, type RingRanks, ringFlops, ringParameters } from './ring.js'

/**
 * 'preserve': the function-preserving start (rank ≥ 2 on bonds a, b, c; see `preservingCores`);
 * 'identity' ([I; 0]) or 'duplicate' (index j reads j mod D1): the fixed rank-1 maps.
 */
export type WidthInit = 'preserve' | 'identity' | 'duplicate'
export type { DepthInit }

export interface MangoSettings {
  /** Tensor-ring rank of every bond, or [a (L→B), b (B→I), c (I→O), d (O→L)]. */
  rank: RingRanks
  widthInit: WidthInit
  depthInit: DepthInit
  /** Std of the random entries added to every core entry (0: the exact initialisation). */
  initNoise: number
}

/** A dModel×dModel block of a layer's weights: chunk `chunk` of `module`, split along `split`. */
export interface Block {
  module: ModuleKind
  chunk: number
  /** 'out': columns chunk·D..(chunk+1)·D; 'in': rows. */
  split: 'in' | 'out'
}

/**
 * The parameter-block axis: q, k, v (column chunks), o (row chunks), fc1 and gate (column
 * chunks), fc2 (row chunks), each chunk dModel wide. Attention width and dFF must be multiples of dModel.
 */
export function blockLayout(spec: TransformerSpec): Block[] {
  const D = spec.dModel
  const A = spec.nHeads * spec.headDim
  const F = spec.dFF
  const out: Block[] = []
  const add = (module: ModuleKind, n: number, split: 'in' | 'out') => {
    for (let chunk = 0; chunk < n; chunk++) out.push({ module, chunk, split })
  }
  add('attn.q', A / D, 'out')
  add('attn.k', A / D, 'out')
  add('attn.v', A / D, 'out')
  add('attn.o', A / D, 'in')
  add('mlp.fc1', F / D, 'out')
  if (spec.activation === 'swiglu') add('mlp.gate', F / D, 'out')
  add('mlp.fc2', F / D, 'in')
  return out
}

const WEIGHT_NAME: Partial<Record<ModuleKind, string>> = {
  'attn.q': 'attn.q',
  'attn.k': 'attn.k',
  'attn.v': 'attn.v',
  'attn.o': 'attn.o',
  'mlp.fc1': 'mlp.fc1',
  'mlp.gate': 'mlp.gate',
  'mlp.fc2': 'mlp.fc2',
}

/** Base (rank-1) maps of the initialisation, as row-major x1×x2 arrays. */
export function baseBlockMap(source: TransformerSpec, target: TransformerSpec): Float32Array {
  const b1 = blockLayout(source)
  const b2 = blockLayout(target)
  const m = new Float32Array(b1.length * b2.length)
  const count = (mod: ModuleKind) => b1.filter((b) => b.module === mod).length
  b2.forEach((t, j) => {
    const i = b1.findIndex((s) => s.module === t.module && s.chunk === t.chunk % count(t.module))
    m[i * b2.length + j] = 1
  })
  return m
}

export function baseWidthMap(n1: number, n2: number, init: WidthInit): Float32Array {
  const m = new Float32Array(n1 * n2)
  for (let j = 0; j < n2; j++) {
    const i = init === 'duplicate' ? j % n1 : j
    if (i < n1) m[i * n2 + j] = 1
  }
  return m
}

/** The L1×L2 depth map: target layer j copies source layer from(j); with `firstOnly`, repeats get 0. */
export function baseDepthMap(L1: number, L2: number, init: DepthInit, firstOnly = false): Float32Array {
  const m = new Float32Array(L1 * L2)
  const { from, first } = depthLayout(L1, L2, init)
  for (let j = 0; j < L2; j++) if (!firstOnly || first[j]) m[from[j] * L2 + j] = 1
  return m
}

/** Residual map: each source unit copied k = D2/D1 times, scaled 1/√k (orthonormal rows, LayerNorm-compatible). */
export function residualMap(n1: number, n2: number): Float32Array {
  const m = new Float32Array(n1 * n2)
  const copies = new Array(n1).fill(0)
  for (let j = 0; j < n2; j++) copies[j % n1]++
  for (let j = 0; j < n2; j++) m[(j % n1) * n2 + j] = 1 / Math.sqrt(copies[j % n1])
  return m
}

/** Modules of the blocks that read the residual stream (pair 0) and that write it (pair 1). */
const WRITES_RESIDUAL = new Set<ModuleKind>(['attn.o', 'mlp.fc2'])

/** A core [R, x1, x2, S] with the given bond slices (r, s) → x1×x2 map, plus noise on every entry. */
function initCore(
  slices: { r: number; s: number; map: Float32Array }[],
  x1: number,
  x2: number,
  R: number,
  S: number,
  noise: number,
  rng: SeededRandom,
) {
  const data = new Float32Array(R * x1 * x2 * S)
  for (const { r, s, map } of slices)
    for (let i = 0; i < x1 * x2; i++) data[(r * x1 * x2 + i) * S + s] = map[i]
  if (noise > 0) for (let i = 0; i < data.length; i++) data[i] += noise * rng.normal()
  return tf.tidy(() => tf.variable(tf.tensor4d(data, [R, x1, x2, S])))
}

export interface MangoOperator extends LearnedParametrisation {
  source: TransformerSpec
  target: TransformerSpec
  settings: MangoSettings
  dims: RingDims
  variables: { B: tf.Variable; I: tf.Variable; O: tf.Variable; L: tf.Variable }
  /** Whether the initialisation is the function-preserving one (else the fixed rank-1 maps). */
  preserving: boolean
}

export function ringDims(source: TransformerSpec, target: TransformerSpec): RingDims {
  return {
    B1: blockLayout(source).length,
    B2: blockLayout(target).length,
    I1: source.dModel,
    I2: target.dModel,
    O1: source.dModel,
    O2: target.dModel,
    L1: source.nLayers,
    L2: target.nLayers,
  }
}

/** Refuses what the block layout cannot represent. */
export function checkBlocks(spec: TransformerSpec, which: string): void {
  const A = spec.nHeads * spec.headDim
  if (A % spec.dModel !== 0 || spec.dFF % spec.dModel !== 0)
    throw new GrowthError(
      `mango: the ${which} splits q/k/v/o and the MLP into dModel×dModel blocks, so the attention width nHeads·headDim (${A}) and dFF (${spec.dFF}) must be multiples of dModel (${spec.dModel}); choose such sizes`,
    )
}

/** Why the function-preserving start cannot be used with these ranks, or null. */
export function preservingRankProblem(rank: RingRanks): string | null {
  const [a, b, c] = bondRanks(rank)
  return a >= 2 && b >= 2 && c >= 2
    ? null
    : 'the function-preserving start needs bond ranks a, b, c ≥ 2 (two kinds of blocks: those reading and those writing the residual stream)'
}

/**
 * Bond slices of the function-preserving start. Two kinds of blocks travel round the ring on
 * bond index p (bonds a, b, c; bond d stays 0):
 * p = 0, blocks reading the residual (q, k, v, fc1, gate): input map R (each unit copied k = D2/D1
 *   times, scaled 1/√k: orthonormal rows, LayerNorm-compatible), output map "duplicate" (new
 *   heads and FFN units are exact copies), depth map "copy" (every target layer copies its source layer);
 * p = 1, blocks writing the residual (o, fc2): input map [I, 0] (the first copy of each unit
 *   keeps the weights, new copies read zero: the copies sum to the source), output map R,
 *   depth map "first copy only" (repeated layers add nothing to the residual stream).
 * The ring's trace then is Σ_p S_B^pp ⊗ S_I^pp ⊗ S_O^p0 ⊗ S_L^0p: each block gets its kind's maps.
 */
function preservingSlices(source: TransformerSpec, target: TransformerSpec, depthInit: DepthInit) {
  const d = ringDims(source, target)
  const b1 = blockLayout(source)
  const b2 = blockLayout(target)
  const full = baseBlockMap(source, target)
  const blockMap = (writes: boolean) =>
    full.map((v, idx) => (WRITES_RESIDUAL.has(b2[idx % d.B2].module) === writes ? v : 0))
  void b1
  return {
    B: [
      { r: 0, s: 0, map: blockMap(false) },
      { r: 1, s: 1, map: blockMap(true) },
    ],
    I: [
      { r: 0, s: 0, map: residualMap(d.I1, d.I2) },
      { r: 1, s: 1, map: baseWidthMap(d.I1, d.I2, 'identity') },
    ],
    O: [
      { r: 0, s: 0, map: baseWidthMap(d.O1, d.O2, 'duplicate') },
      { r: 1, s: 0, map: residualMap(d.O1, d.O2) },
    ],
    L: [
      { r: 0, s: 0, map: baseDepthMap(d.L1, d.L2, depthInit) },
      { r: 0, s: 1, map: baseDepthMap(d.L1, d.L2, depthInit, true) },
    ],
  }
}

/**
 * Maps per-layer vectors v [L1, n1, D1] through the ring with one of the two width cores
 * replaced by an identity on its bonds (a vector has one width axis): `core` [P, D1, D2, Q] is
 * the remaining width core sliced to the bonds it shares with `beta` (P) and `depth` (Q);
 * beta [Ra, n1, n2, P] is S_B restricted to the vector's blocks; depth [Q, L1, L2, Ra] is S_L
 * (or an identity bond for tensors outside the layers). Returns [L2, n2, D2].
 */
function ringVectorMap(v: tf.Tensor, core: tf.Tensor, beta: tf.Tensor, depth: tf.Tensor): tf.Tensor {
  const [L1, n1, D1] = v.shape as number[]
  const [P, , D2, Q] = core.shape as number[]
  const [Ra, , n2] = beta.shape as number[]
  const L2 = depth.shape[2] as number
  const x = tf
    .matMul(v.reshape([L1 * n1, D1]), tf.transpose(core, [1, 0, 2, 3]).reshape([D1, P * D2 * Q]))
    .reshape([L1, n1, P, D2, Q])
  const y = tf.matMul(
    tf.transpose(x, [0, 3, 4, 1, 2]).reshape([L1 * D2 * Q, n1 * P]),
    tf.transpose(beta, [1, 3, 0, 2]).reshape([n1 * P, Ra * n2]),
  ) // [L1, D2, Q, Ra, n2]
  const z = tf.matMul(
    tf.transpose(y.reshape([L1, D2, Q, Ra, n2]), [4, 1, 0, 2, 3]).reshape([n2 * D2, L1 * Q * Ra]),
    tf.transpose(depth, [1, 0, 3, 2]).reshape([L1 * Q * Ra, L2]),
  ) // [n2, D2, L2]
  return tf.transpose(z.reshape([n2, D2, L2]), [2, 0, 1])
}

function ringVectorFlops(
  L1: number,
  n1: number,
  D1: number,
  P: number,
  D2: number,
  Q: number,
  Ra: number,
  n2: number,
  L2: number,
) {
  const x = 2 * L1 * n1 * D1 * P * D2 * Q
  const yz = 2 * L1 * D2 * Q * n1 * P * Ra * n2 + 2 * n2 * D2 * L1 * Q * Ra * L2
  // x has a constant operand (the source vector): one gradient; y and z two.
  return { forward: x + yz, gradient: x + 2 * yz }
}

export function createMango(
  source: TransformerSpec,
  target: TransformerSpec,
  sourceParams: Params | null,
  settings: MangoSettings,
  seed: number,
): MangoOperator {
  checkBlocks(source, 'source')
  checkBlocks(target, 'target')
  const rng = new SeededRandom(seed)
  const R = settings.rank
  const [Ra, Rb, Rc, Rd] = bondRanks(R)
  const d = ringDims(source, target)
  const noise = settings.initNoise
  const preserving = settings.widthInit === 'preserve' && preservingRankProblem(R) === null
  let variables: MangoOperator['variables']
  if (preserving) {
    const s = preservingSlices(source, target, settings.depthInit)
    variables = {
      B: initCore(s.B, d.B1, d.B2, Ra, Rb, noise, rng),
      I: initCore(s.I, d.I1, d.I2, Rb, Rc, noise, rng),
      O: initCore(s.O, d.O1, d.O2, Rc, Rd, noise, rng),
      L: initCore(s.L, d.L1, d.L2, Rd, Ra, noise, rng),
    }
  } else {
    // The fixed rank-1 maps in the (0, 0) slice; 'preserve' at rank 1 falls back to [I; 0].
    const width = settings.widthInit === 'duplicate' ? 'duplicate' : 'identity'
    const one = (map: Float32Array) => [{ r: 0, s: 0, map }]
    variables = {
      B: initCore(one(baseBlockMap(source, target)), d.B1, d.B2, Ra, Rb, noise, rng),
      I: initCore(one(baseWidthMap(d.I1, d.I2, width)), d.I1, d.I2, Rb, Rc, noise, rng),
      O: initCore(one(baseWidthMap(d.O1, d.O2, width)), d.O1, d.O2, Rc, Rd, noise, rng),
      L: initCore(one(baseDepthMap(d.L1, d.L2, settings.depthInit)), d.L1, d.L2, Rd, Ra, noise, rng),
    }
  }
  const blocks1 = blockLayout(source)
  const blocks2 = blockLayout(target)
  const D1 = source.dModel
  const D2 = target.dModel
  const L1 = source.nLayers
  const L2 = target.nLayers
  const targetTable = paramTable(target)
  const sourceTable = paramTable(source)

  const blockOf = (w: tf.Tensor, b: Block, D: number): tf.Tensor =>
    b.split === 'out' ? w.slice([0, b.chunk * D], [D, D]) : w.slice([b.chunk * D, 0], [D, D])
  const range = (blocks: Block[], module: ModuleKind) => {
    const ids = blocks.map((b, i) => (b.module === module ? i : -1)).filter((i) => i >= 0)
    return { start: ids[0], n: ids.length }
  }
  /** The vector's width axis: 'in' for norms (they feed q or fc1), 'out' for biases. */
  const vectorPlan = (module: ModuleKind, kind: string) => {
    if (kind === 'scale' || kind === 'shift') {
      // norm1 feeds attention (q's blocks), norm2 the MLP (fc1's blocks); post-norm likewise.
      const feeds: ModuleKind = module === 'norm1' ? 'attn.q' : 'mlp.fc1'
      return {
        side: 'in' as const,
        r1: { start: range(blocks1, feeds).start, n: 1 },
        r2: { start: range(blocks2, feeds).start, n: 1 },
      }
    }
    if (WRITES_RESIDUAL.has(module))
      return {
        side: 'out' as const,
        r1: { start: range(blocks1, module).start, n: 1 },
        r2: { start: range(blocks2, module).start, n: 1 },
      }
    return { side: 'out' as const, r1: range(blocks1, module), r2: range(blocks2, module) }
  }
  const P_in = Rb // 'in': S_I [Rb, ·, ·, Rc] sliced to c < min(Rc, Rd)
  const Q_in = Math.min(Rc, Rd)
  const P_out = Math.min(Rb, Rc) // 'out': S_O [Rc, ·, ·, Rd] sliced to c < min(Rb, Rc)
  const Q_out = Rd
  const mGlobal = Math.min(Ra, Rc, Rd)

  /** The residual map of tensors outside the layers: the ring at q's first block with S_O and S_L traced. */
  const residualFactor = (): tf.Tensor2D => {
    const betaQ = variables.B.slice([0, 0, 0, 0], [Ra, 1, 1, Rb]).reshape([Ra, Rb])
    // M[b, c] = β[c, b] for c < min(Ra, Rc, Rd), else 0
    let m = tf.transpose(betaQ.slice([0, 0], [mGlobal, Rb])) // [Rb, m]
    if (mGlobal < Rc) m = tf.concat([m, tf.zeros([Rb, Rc - mGlobal])], 1)
    return tf
      .matMul(tf.transpose(variables.I, [1, 2, 0, 3]).reshape([D1 * D2, Rb * Rc]), m.reshape([Rb * Rc, 1]))
      .reshape([D1, D2]) as tf.Tensor2D
  }

  const stackWeights = (sp: Params) =>
    tf.stack(
      Array.from({ length: L1 }, (_, l) =>
        tf.stack(blocks1.map((b) => blockOf(sp[`layers.${l}.${WEIGHT_NAME[b.module]}.weight`], b, D1))),
      ),
      3,
    ) // [B1, D1, D1, L1]
  // The source's block tensor is a constant: built once for the weights the operator was made from.
  const cachedM1 = sourceParams ? tf.keep(tf.tidy(() => stackWeights(sourceParams))) : null

  const materialise = (sp: Params): Params => {
    const out: Params = {}
    const m1 = sp === sourceParams && cachedM1 ? cachedM1 : stackWeights(sp)
    const m2 = contractRing(m1, variables) // [B2, D2, D2, L2]
    const perLayer = tf.unstack(m2, 3) // L2 x [B2, D2, D2]
    for (let l = 0; l < L2; l++) {
      const blocks = tf.unstack(perLayer[l], 0)
      for (const mod of new Set(blocks2.map((b) => b.module))) {
        const idx = blocks2.map((b, i) => (b.module === mod ? i : -1)).filter((i) => i >= 0)
        const axis = blocks2[idx[0]].split === 'out' ? 1 : 0
        out[`layers.${l}.${WEIGHT_NAME[mod]}.weight`] = tf.concat(
          idx.map((i) => blocks[i]),
          axis,
        )
      }
    }
    const sRes = residualFactor()
    const coreIn = variables.I.slice([0, 0, 0, 0], [P_in, D1, D2, Q_in])
    const coreOut = variables.O.slice([0, 0, 0, 0], [P_out, D1, D2, Q_out])
    for (const info of targetTable) {
      if (out[info.name]) continue
      const name = info.name
      if (info.layer === null) {
        const w = sp[name]
        if (info.shape.length === 1) {
          out[name] =
            info.axes[0] === 'residual' ? tf.matMul(w.reshape([1, D1]), sRes).reshape([D2]) : tf.clone(w)
        } else if (info.axes[0] === 'residual' && info.axes[1] === 'residual') {
          out[name] = tf.matMul(tf.matMul(sRes, w as tf.Tensor2D, true, false), sRes) // head.transform
        } else if (info.axes[1] === 'residual') {
          out[name] = tf.matMul(w as tf.Tensor2D, sRes) // embeddings, patch embedding
        } else if (info.axes[0] === 'residual') {
          out[name] = tf.matMul(sRes, w as tf.Tensor2D, true, false) // head [D, out]
        } else out[name] = tf.clone(w)
        continue
      }
      if (info.layer !== 0) continue
      // Per-layer vectors (norms and biases), all target layers at once.
      const suffix = name.slice('layers.0.'.length)
      const plan = vectorPlan(info.module, info.kind)
      const P = plan.side === 'in' ? P_in : P_out
      const v = tf
        .stack(Array.from({ length: L1 }, (_, l) => sp[`layers.${l}.${suffix}`]))
        .reshape([L1, plan.r1.n, D1])
      const beta = variables.B.slice([0, plan.r1.start, plan.r2.start, 0], [Ra, plan.r1.n, plan.r2.n, P])
      const depth = variables.L.slice([0, 0, 0, 0], [plan.side === 'in' ? Q_in : Q_out, L1, L2, Ra])
      const mapped = ringVectorMap(v, plan.side === 'in' ? coreIn : coreOut, beta, depth)
      const rows = tf.unstack(mapped.reshape([L2, plan.r2.n * D2]), 0)
      for (let l = 0; l < L2; l++) out[`layers.${l}.${suffix}`] = rows[l]
    }
    return out
  }

  // FLOPs: the ring, the residual factor, the vector maps and the global products.
  const ring = ringFlops(d, R)
  let flops = ring.forward
  let gradientFlops = ring.gradient
  const add = (f: number, g: number) => {
    flops += f
    gradientFlops += g
  }
  add(2 * D1 * D2 * Rb * Rc, 2 * 2 * D1 * D2 * Rb * Rc)
  for (const info of sourceTable) {
    if (info.layer === null) {
      if (info.axes[0] === 'residual' && info.axes[1] === 'residual') {
        const first = 2 * D2 * D1 * D1
        const second = 2 * D2 * D1 * D2
        add(first + second, first + 2 * second)
      } else if (info.axes.includes('residual')) {
        const f = 2 * (info.shape[0] * (info.shape[1] ?? 1)) * D2
        add(f, f)
      }
    } else if (info.layer === 0 && info.kind !== 'weight') {
      const plan = vectorPlan(info.module, info.kind)
      const side = plan.side === 'in'
      const f = ringVectorFlops(
        L1,
        plan.r1.n,
        D1,
        side ? P_in : P_out,
        D2,
        side ? Q_in : Q_out,
        Ra,
        plan.r2.n,
        L2,
      )
      add(f.forward, f.gradient)
    }
  }

  return {
    source,
    target,
    settings,
    dims: d,
    preserving,
    variables,
    parameterCount: ringParameters(d, R),
    materialiseFlops: Math.round(flops),
    gradientFlops: Math.round(gradientFlops),
    materialise,
    details: {
      rank: settings.rank,
      ring: d,
      widthInit: settings.widthInit,
      depthInit: settings.depthInit,
      preservingStart: preserving,
    },
    dispose: () => {
      for (const v of Object.values(variables)) v.dispose()
      cachedM1?.dispose()
    },
  }
}
