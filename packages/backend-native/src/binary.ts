import type * as tf from '@tensorflow/tfjs'
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu'
import type { NativeAddon } from './addon.js'
import { floats } from './kernels.js'
import { outputs } from './pool.js'

export const BINARY_OPS = {
  Add: 0,
  Sub: 1,
  Multiply: 2,
  RealDiv: 3,
  Pow: 4,
  Maximum: 5,
  Minimum: 6,
  SquaredDifference: 7,
} as const
export type BinaryKernel = keyof typeof BINARY_OPS

/** Output shape of numpy-style broadcasting, or null when the shapes do not broadcast. */
export function broadcastShape(a: number[], b: number[]): number[] | null {
  const rank = Math.max(a.length, b.length)
  const out: number[] = []
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1
    const db = b[b.length - rank + i] ?? 1
    if (da !== db && da !== 1 && db !== 1) return null
    out.push(da === 1 ? db : da)
  }
  return out
}

/** Element strides of `shape` read as `out` (0 on broadcast axes). */
function broadcastStrides(shape: number[], out: number[]): Int32Array {
  const strides = new Int32Array(out.length)
  let s = 1
  for (let i = out.length - 1; i >= 0; i--) {
    const d = shape[shape.length - out.length + i] ?? 1
    strides[i] = d === 1 ? 0 : s
    s *= d
  }
  return strides
}

/** A float32 binary op of BINARY_OPS with broadcasting in C++; null (fall back) for other dtypes. */
export function nativeBinary(
  addon: NativeAddon,
  backend: MathBackendCPU,
  kernel: BinaryKernel,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
): tf.TensorInfo | null {
  const av = floats(backend, a)
  const bv = floats(backend, b)
  if (!av || !bv) return null
  const shape = broadcastShape(a.shape, b.shape)
  if (!shape) return null
  const size = shape.reduce((x, y) => x * y, 1)
  const out = outputs.take(size)
  if (size > 0) {
    const rank = Math.max(1, shape.length)
    const s = shape.length === 0 ? [1] : shape
    addon.binary(
      BINARY_OPS[kernel],
      av,
      bv,
      out,
      Int32Array.from(s),
      rank === shape.length ? broadcastStrides(a.shape, shape) : Int32Array.of(0),
      rank === shape.length ? broadcastStrides(b.shape, shape) : Int32Array.of(0),
    )
  }
  return backend.makeTensorInfo(shape, 'float32', out)
}
