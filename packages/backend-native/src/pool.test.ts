import { skipUnless } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { loadAddon, registerNativeBackend } from './index.js'
import { BufferPool, defaultPoolBytes } from './pool.js'

const missing = skipUnless(loadAddon().ok, 'the native addon over OpenBLAS (npm run setup builds it)')

describe('BufferPool', () => {
  it('reuses an array it made once it is given back, by exact length', () => {
    const pool = new BufferPool(1 << 20, 16)
    const a = pool.take(100)
    pool.give(a)
    expect(pool.heldBytes).toBe(400)
    expect(pool.take(99)).not.toBe(a)
    expect(pool.take(100)).toBe(a)
    expect(pool.heldBytes).toBe(0)
  })

  it('never reuses arrays it did not make, exposed ones (or views of them), short ones, or past its cap', () => {
    const pool = new BufferPool(1000, 16)
    const foreign = new Float32Array(100)
    pool.give(foreign)
    const exposed = pool.take(100)
    pool.expose(exposed.subarray(10, 20))
    pool.give(exposed)
    const short = pool.take(8)
    pool.give(short)
    expect(pool.heldBytes).toBe(0)
    const first = pool.take(200)
    const second = pool.take(200)
    pool.give(first)
    pool.give(first)
    pool.give(second)
    expect(pool.heldBytes).toBe(800)
    expect(pool.take(200)).toBe(first)
  })

  it('lets go of what it holds once nothing was taken for idleMs', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'performance'] })
    try {
      const pool = new BufferPool(1 << 20, 16, 30)
      const a = pool.take(100)
      pool.give(a)
      expect(pool.heldBytes).toBe(400)
      vi.advanceTimersByTime(10)
      pool.take(50) // activity postpones the release
      vi.advanceTimersByTime(25)
      expect(pool.heldBytes).toBe(400)
      vi.advanceTimersByTime(10)
      expect(pool.heldBytes).toBe(0)
      expect(pool.take(100)).not.toBe(a)
    } finally {
      vi.useRealTimers()
    }
  })

  it('defaults to a quarter of the memory, at most 4 GiB', () => {
    expect(defaultPoolBytes(8 * 2 ** 30)).toBe(2 * 2 ** 30)
    expect(defaultPoolBytes(64 * 2 ** 30)).toBe(4 * 2 ** 30)
  })

  it('a zero cap turns reuse off', () => {
    const pool = new BufferPool(0, 1)
    const a = pool.take(64)
    pool.give(a)
    expect(pool.take(64)).not.toBe(a)
  })
})

describe.skipIf(missing)('native backend buffer reuse', () => {
  let previous = ''
  beforeAll(() => {
    previous = tf.getBackend() ?? 'cpu'
    expect(registerNativeBackend().ok).toBe(true)
    tf.setBackend('native')
  })
  afterAll(() => {
    tf.setBackend(previous)
  })

  const n = 64 * 1024

  it('values read out with dataSync keep their contents after the tensor is disposed and memory is reused', () => {
    const x = tf.fill([n], 3)
    const y = tf.mul(x, 2)
    const read = y.dataSync()
    y.dispose()
    const z = tf.mul(x, 5)
    expect(read[0]).toBe(6)
    expect(read[n - 1]).toBe(6)
    expect(z.dataSync()[0]).toBe(15)
    tf.dispose([x, z])
  })

  it('a slice that views its input keeps its values after the input is disposed and memory is reused', () => {
    const x = tf.fill([4, n / 4], 2)
    const y = tf.add(x, 1)
    const row = tf.slice(y, [1, 0], [1, n / 4])
    y.dispose()
    const others = [0, 1, 2].map((k) => tf.mul(x, 10 + k))
    expect(Array.from(row.dataSync().slice(0, 3))).toEqual([3, 3, 3])
    tf.dispose([x, row, ...others])
  })

  it('repeated steps reuse memory: results stay identical and no tensors leak', () => {
    const w = tf.variable(tf.randomNormal([256, 256], 0, 0.1, 'float32', 1))
    const x = tf.randomNormal([128, 256], 0, 1, 'float32', 2)
    const before = tf.memory().numTensors
    const losses = Array.from({ length: 4 }, () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.tanh(tf.matMul(x, w)))), [w])
        return [value.dataSync()[0], tf.sum(grads[w.name]).dataSync()[0]]
      }),
    )
    expect(tf.memory().numTensors).toBe(before)
    for (const l of losses) expect(l).toEqual(losses[0])
    tf.dispose([w, x])
  })
})
