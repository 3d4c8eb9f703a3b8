import { skipUnless } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, expect } from 'vitest'
import { loadAddon, registerNativeBackend } from './index.js'

/** The skip reason of the native kernel tests when the addon is not built (false when it is). */
export const nativeMissing = skipUnless(
  loadAddon().ok,
  'the native addon over OpenBLAS (npm run setup builds it)',
)

/** Called in a describe: its tests run on the native backend (which must register), then the previous one is restored. */
export function onNativeBackend(): void {
  let previous = ''
  beforeAll(() => {
    previous = tf.getBackend() ?? 'cpu'
    expect(registerNativeBackend().ok).toBe(true)
  })
  afterAll(() => {
    tf.setBackend(previous)
  })
}

/** n seeded pseudo-random floats in [lo, hi) (a 32-bit LCG): the kernel tests' shared inputs. */
export function rand(n: number, seed: number, lo = -2, hi = 2): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return lo + ((hi - lo) * s) / 2 ** 32
  })
}

export const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

export type Plain = { shape: number[]; dtype: tf.DataType; data: tf.TypedArray }

/** f's outputs on `backend`, read back (its tensors disposed). */
export function runOn(backend: string, f: () => tf.Tensor | tf.Tensor[]): Plain[] {
  tf.setBackend(backend)
  return tf.tidy(() => {
    const out = f()
    return (Array.isArray(out) ? out : [out]).map((t) => ({
      shape: t.shape,
      dtype: t.dtype,
      data: t.dataSync(),
    }))
  })
}

/**
 * Same outputs, shapes and dtypes; values within tol·(1 + |want|), NaN where want is NaN and
 * infinities exactly. The first mismatch fails with both values named.
 */
export function expectClose(got: Plain[], want: Plain[], tol: number): void {
  expect(got.length).toBe(want.length)
  for (const [i, w] of want.entries()) {
    expect(got[i].shape).toEqual(w.shape)
    expect(got[i].dtype).toBe(w.dtype)
    for (let j = 0; j < w.data.length; j++) {
      const a = got[i].data[j]
      const b = w.data[j]
      const ok = Number.isNaN(b)
        ? Number.isNaN(a)
        : Number.isFinite(b)
          ? Math.abs(a - b) <= tol * (1 + Math.abs(b))
          : a === b
      if (!ok) {
        expect(`output ${i}[${j}] = ${a}`).toBe(`output ${i}[${j}] = ${b}`)
        return
      }
    }
  }
}
