import type * as tf from '@tensorflow/tfjs'
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu'
import type { NativeAddon } from './addon.js'
import { floats } from './kernels.js'
import { outputs } from './pool.js'

type Info = tf.TensorInfo

/** m, k, n of op(a)·op(b) over the last two axes; null when the inner sizes differ. */
function productDims(a: Info, b: Info, transposeA: boolean, transposeB: boolean) {
  const ra = a.shape.length
  const rb = b.shape.length
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2]
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1]
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2]
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1]
  return k === kb ? { m, k, n } : null
}

/**
 * BatchMatMul on BLAS: inputs [...batch, r, c]; batch dims must be equal or one side's batch
 * must be 1 (broadcast). Returns null for anything else so the caller can fall back to cpu.
 */
export function nativeBatchMatMul(
  addon: NativeAddon,
  backend: MathBackendCPU,
  a: Info,
  b: Info,
  transposeA: boolean,
  transposeB: boolean,
): Info | null {
  const av = floats(backend, a)
  const bv = floats(backend, b)
  if (!av || !bv) return null
  const dims = productDims(a, b, transposeA, transposeB)
  if (!dims) return null
  const { m, k, n } = dims
  const batchA = a.shape.slice(0, -2)
  const batchB = b.shape.slice(0, -2)
  const sizeA = batchA.reduce((x, y) => x * y, 1)
  const sizeB = batchB.reduce((x, y) => x * y, 1)
  let outBatch: number[]
  if (sizeA === sizeB && batchA.join() === batchB.join()) outBatch = batchA
  else if (sizeB === 1 && batchB.every((d) => d === 1))
    outBatch =
      batchA.length >= batchB.length ? batchA : [...batchB.slice(0, batchB.length - batchA.length), ...batchA]
  else if (sizeA === 1 && batchA.every((d) => d === 1))
    outBatch =
      batchB.length >= batchA.length ? batchB : [...batchA.slice(0, batchA.length - batchB.length), ...batchB]
  else return null
  const batch = Math.max(sizeA, sizeB)
  const out = outputs.take(batch * m * n)
  addon.sgemmBatched(
    av,
    bv,
    out,
    batch,
    m,
    n,
    k,
    transposeA ? 1 : 0,
    transposeB ? 1 : 0,
    sizeA === 1 ? 0 : m * k,
    sizeB === 1 ? 0 : k * n,
  )
  return backend.makeTensorInfo([...outBatch, m, n], 'float32', out)
}

/**
 * A single (unbatched) product plus a bias over its last axis (core's `linear`) in one BLAS call: the bias is
 * written into the output and the product accumulated onto it. Returns null for anything else
 * (batched operands, a bias that is not one value per output column) so the caller can take the
 * product-then-add path.
 */
export function nativeMatMulBias(
  addon: NativeAddon,
  backend: MathBackendCPU,
  a: Info,
  b: Info,
  bias: Info,
  transposeA: boolean,
  transposeB: boolean,
): Info | null {
  // tfjs hands the kernel rank-3 operands ([1, m, k]); any leading dimensions must be 1.
  const batch = a.shape.length >= b.shape.length ? a.shape.slice(0, -2) : b.shape.slice(0, -2)
  if (a.shape.length < 2 || b.shape.length < 2) return null
  if (![...a.shape.slice(0, -2), ...b.shape.slice(0, -2)].every((d) => d === 1)) return null
  const dims = productDims(a, b, transposeA, transposeB)
  if (!dims) return null
  const { m, k, n } = dims
  // [n] or [1, n]: one value per column (anything else broadcasts differently).
  const perColumn = bias.shape.at(-1) === n && bias.shape.slice(0, -1).every((d) => d === 1)
  if (!perColumn || bias.shape.length > 2) return null
  const av = floats(backend, a)
  const bv = floats(backend, b)
  const biasv = floats(backend, bias)
  if (!av || !bv || !biasv) return null
  const out = outputs.take(m * n)
  addon.sgemmBias(av, bv, biasv, out, m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0)
  return backend.makeTensorInfo([...batch, m, n], 'float32', out)
}
