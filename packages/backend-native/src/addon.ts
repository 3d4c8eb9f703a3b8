import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** 32-bit element storage moved as raw words by data-movement kernels. */
export type Word32Array = Float32Array | Int32Array

export interface NativeAddon {
  /** out[i] = op(a[i])·op(b[i]), row-major; a stride of 0 broadcasts that operand. */
  sgemmBatched(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
    strideA: number,
    strideB: number,
  ): void
  /** out = op(a)·op(b) + bias, row-major 2-D operands; bias [n] is added to every row. */
  sgemmBias(
    a: Float32Array,
    b: Float32Array,
    bias: Float32Array,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
  ): void
  /**
   * out = a ∘ b with broadcasting (op 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 maximum, 6 minimum,
   * 7 squared difference); strides are 0 on broadcast axes.
   */
  binary(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    shape: Int32Array,
    stridesA: Int32Array,
    stridesB: Int32Array,
  ): void
  /** out = f(x): 0 exp, 1 log, 2 tanh, 3 sqrt, 4 rsqrt, 5 square, 6 neg, 7 sigmoid, 8 relu, 9 erf, 10 abs, 11 reciprocal. */
  unary(op: number, x: Float32Array, out: Float32Array): void
  /** Reduces the axes flagged 1 in `reduced` (op 0 sum, 1 max, 2 min, 3 mean); out holds the kept axes. */
  reduce(op: number, x: Float32Array, out: Float32Array, shape: Int32Array, reduced: Int32Array): void
  /** Row-wise softmax of a [rows, cols] matrix. */
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void
  /** out axis i = x axis perm[i]; float32 or int32. */
  transpose(x: Word32Array, out: Word32Array, shape: Int32Array, perm: Int32Array): void
  /** out[o, j, :] = x[o, indices[j], :]; -1, or the position of the first out-of-range index. */
  gather(
    x: Word32Array,
    indices: Int32Array,
    out: Word32Array,
    outer: number,
    axisSize: number,
    inner: number,
  ): number
  /** out[s, :] = Σ x[i, :] over ids[i] = s; ids outside [0, numSegments) are dropped. */
  segmentSum(x: Float32Array, ids: Int32Array, out: Float32Array, numSegments: number, inner: number): void
  /** Fused kernels of @sprout/core's FUSED_KERNELS contract (see native/fused.cc for the math). */
  gelu(x: Float32Array, y: Float32Array, n: number): void
  geluGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, n: number): void
  layerNorm(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    cols: number,
    eps: number,
    rms: number,
  ): void
  layerNormGrad(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    rows: number,
    cols: number,
    rms: number,
  ): void
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    ctx: Float32Array,
    probs: Float32Array,
    batch: number,
    seqLen: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    causal: number,
  ): void
  attentionGrad(
    dctx: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probs: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    batch: number,
    seqLen: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    causal: number,
  ): void
  /** Returns the (weighted) mean loss; fills lse with each row's log-sum-exp. */
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    weights: Float32Array,
    lse: Float32Array,
    rows: number,
    cols: number,
  ): number
  crossEntropyGrad(
    logits: Float32Array,
    targets: Int32Array,
    weights: Float32Array,
    lse: Float32Array,
    dlogits: Float32Array,
    rows: number,
    cols: number,
    dy: number,
  ): void
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    pOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    c1: number,
    c2: number,
    decay: number,
  ): void
  /** OpenBLAS and C++ worker threads. */
  setThreads(n: number): void
  /** OpenBLAS build configuration string. */
  blas: string
}

const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url))

/** Where the install step (scripts/build-addon.cjs, node-gyp) puts the compiled addon. */
export const ADDON_PATH = join(here, '..', 'build', 'Release', 'sprout_native.node')

/** The command that builds the addon after installing, in a user's project or this repository. */
export const BUILD_COMMAND = 'npx @sprout/backend-native build'

/** The outcome of the last build attempt, as scripts/build-addon.cjs recorded it. */
export interface BuildRecord {
  ok: boolean
  /** What was missing (when not ok). */
  missing?: string
  detail?: string
  node?: string
  at?: string
}

export const BUILD_RECORD_PATH = join(here, '..', 'build', 'sprout-build.json')

export function lastBuild(path: string = BUILD_RECORD_PATH): BuildRecord | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as BuildRecord
  } catch {
    return null
  }
}

/** Registering the `native` backend: ok with its OpenBLAS configuration, or why not and the fix. */
export type NativeStatus =
  | { ok: true; detail: string; threads: number; blas: string }
  | { ok: false; kind: 'not-built' | 'missing-blas' | 'load-failed'; reason: string; fix: string }

export type AddonLoad =
  | { ok: true; addon: NativeAddon }
  | { ok: false; kind: 'not-built' | 'missing-blas' | 'load-failed'; reason: string; fix: string }

/**
 * Loads the compiled addon (build/Release/sprout_native.node by default), or says why not in
 * one line, with the command that fixes it.
 */
export function loadAddon(path: string = ADDON_PATH, record: BuildRecord | null = lastBuild()): AddonLoad {
  if (!existsSync(path)) {
    const why = record && !record.ok && record.missing ? `: when installed, missing ${record.missing}` : ''
    const blas = record?.missing?.includes('OpenBLAS') ?? false
    return {
      ok: false,
      kind: blas ? 'missing-blas' : 'not-built',
      reason: `the native addon is not built${why}`,
      fix: blas
        ? `install OpenBLAS (Debian: apt-get install libopenblas-dev), then ${BUILD_COMMAND}`
        : BUILD_COMMAND,
    }
  }
  try {
    return { ok: true, addon: createRequire(join(here, 'index.js'))(path) as NativeAddon }
  } catch (e) {
    const message = (e as Error).message.split('\n')[0]!
    const blas = /openblas/i.test(message)
    return {
      ok: false,
      kind: blas ? 'missing-blas' : 'load-failed',
      reason: `the native addon failed to load (${message})`,
      fix: blas
        ? `install the OpenBLAS library (Debian: apt-get install libopenblas0), or rebuild: ${BUILD_COMMAND}`
        : `rebuild it for this Node: ${BUILD_COMMAND}`,
    }
  }
}
