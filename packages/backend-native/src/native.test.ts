import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { nativeMissing, onNativeBackend, rand } from './kernels.testutil.js'

/** Runs f on a backend with tensors built from plain arrays there, returning plain values. */
function on<T extends tf.TensorContainer>(backend: string, f: () => T): T {
  tf.setBackend(backend)
  return tf.tidy(f)
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe.skipIf(nativeMissing)('native backend', () => {
  onNativeBackend()

  const cases: { name: string; a: number[]; b: number[] }[] = [
    { name: '2-D odd sizes', a: [7, 13], b: [13, 5] },
    { name: 'equal batch', a: [3, 4, 6], b: [3, 6, 9] },
    { name: 'broadcast b', a: [2, 3, 5, 4], b: [4, 7] },
    { name: 'broadcast a', a: [1, 5, 4], b: [6, 4, 3] },
    { name: 'empty rows', a: [0, 4], b: [4, 3] },
    { name: 'empty inner', a: [3, 0], b: [0, 2] },
    { name: 'large', a: [65, 129], b: [129, 33] },
    { name: 'many heads', a: [4, 16, 33, 17], b: [4, 16, 17, 29] },
  ]
  for (const c of cases)
    for (const ta of [false, true])
      for (const tb of [false, true])
        it(`BatchMatMul ${c.name} transposeA=${ta} transposeB=${tb} equals cpu`, () => {
          const shapeA = ta ? [...c.a.slice(0, -2), c.a.at(-1)!, c.a.at(-2)!] : c.a
          const shapeB = tb ? [...c.b.slice(0, -2), c.b.at(-1)!, c.b.at(-2)!] : c.b
          const av = rand(
            shapeA.reduce((x, y) => x * y, 1),
            1,
            -0.5,
            0.5,
          )
          const bv = rand(
            shapeB.reduce((x, y) => x * y, 1),
            2,
            -0.5,
            0.5,
          )
          const run = () => {
            const r = tf.matMul(tf.tensor(av, shapeA), tf.tensor(bv, shapeB), ta, tb)
            return { shape: r.shape, data: r.dataSync() }
          }
          const want = on('cpu', run)
          const got = on('native', run)
          expect(got.shape).toEqual(want.shape)
          expect(maxDiff(got.data, want.data)).toBeLessThan(1e-5)
        })

  const shapes: [number[], number[]][] = [
    [[5], [5]],
    [[2, 3, 4], [4]],
    [
      [2, 1, 4],
      [1, 3, 1],
    ],
    [[], [3, 2]],
    [[6, 1], []],
    [
      [1, 7, 3],
      [2, 1, 3],
    ],
    [[0, 3], [3]],
    [
      [4, 5, 6, 7],
      [5, 1, 7],
    ],
  ]
  const binaryOps = {
    add: tf.add,
    sub: tf.sub,
    mul: tf.mul,
    div: tf.div,
    pow: tf.pow,
    maximum: tf.maximum,
    minimum: tf.minimum,
    squaredDifference: tf.squaredDifference,
  }
  for (const [op, fn] of Object.entries(binaryOps))
    for (const [sa, sb] of shapes)
      it(`${op} [${sa}] with [${sb}] equals cpu`, () => {
        const av = rand(
          sa.reduce((x, y) => x * y, 1),
          7,
          -0.5,
          0.5,
        )
        const bv = Float32Array.from(
          rand(
            sb.reduce((x, y) => x * y, 1),
            8,
            -0.5,
            0.5,
          ),
          (v) => v + (op === 'div' ? 1 : 0),
        )
        if (op === 'pow') for (let i = 0; i < av.length; i++) av[i] = Math.abs(av[i]) + 0.1
        const run = () => {
          const r = fn(tf.tensor(av, sa), tf.tensor(bv, sb))
          return { shape: r.shape, data: r.dataSync() }
        }
        const want = on('cpu', run)
        const got = on('native', run)
        expect(got.shape).toEqual(want.shape)
        expect(maxDiff(got.data, want.data)).toBeLessThan(op === 'pow' ? 1e-5 : 1e-6)
      })

  it('gradients through broadcast arithmetic equal cpu; int32 arithmetic falls back', () => {
    const av = rand(2 * 3 * 4, 9, -0.5, 0.5)
    const bv = Float32Array.from(rand(3 * 1, 10, -0.5, 0.5), (v) => v + 2)
    const run = () => {
      const a = tf.tensor(av, [2, 3, 4])
      const b = tf.tensor(bv, [3, 1])
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.div(tf.mul(tf.sub(x, y), tf.add(x, y)), y))
      return tf
        .grads(f)([a, b])
        .map((g) => g.dataSync())
    }
    const want = on('cpu', run)
    const got = on('native', run)
    for (const [i, w] of want.entries()) expect(maxDiff(got[i], w)).toBeLessThan(1e-5)
    const ints = on('native', () =>
      tf.mul(tf.tensor1d([2, 3], 'int32'), tf.tensor1d([4, 5], 'int32')).dataSync(),
    )
    expect(Array.from(ints)).toEqual([8, 15])
  })

  it('gradients through matMul and fused matMul (bias, relu) equal cpu', () => {
    const av = rand(4 * 6, 3, -0.5, 0.5)
    const bv = rand(6 * 5, 4, -0.5, 0.5)
    const biasv = rand(5, 5, -0.5, 0.5)
    const run = () => {
      const a = tf.tensor(av, [4, 6])
      const b = tf.tensor(bv, [6, 5])
      const bias = tf.tensor(biasv, [5])
      const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(
          tf.mul(
            tf.fused.matMul({ a: x, b: y, bias: z, activation: 'relu' }),
            tf.range(0, 20).reshape([4, 5]),
          ),
        )
      const [ga, gb, gz] = tf.grads(f)([a, b, bias])
      const y = tf.fused.matMul({ a, b, bias, activation: 'relu', transposeB: false })
      return [ga, gb, gz, y].map((t) => t.dataSync())
    }
    const want = on('cpu', run)
    const got = on('native', run)
    for (const [i, w] of want.entries()) expect(maxDiff(got[i], w)).toBeLessThan(1e-4)
  })

  it('int32 inputs fall back to the cpu kernel', () => {
    const run = () =>
      tf.matMul(tf.tensor2d([[1, 2]], [1, 2], 'int32'), tf.tensor2d([[3], [4]], [2, 1], 'int32')).dataSync()
    expect(Array.from(on('native', run))).toEqual([11])
  })

  it('leaks no tensors and keeps resident memory flat over 500 small training steps', () => {
    tf.setBackend('native')
    const w = tf.variable(tf.tensor(rand(16 * 16, 6, -0.5, 0.5), [16, 16]))
    const table = tf.variable(tf.tensor(rand(10 * 16, 7, -0.5, 0.5), [10, 16]))
    const ids = tf.tensor1d([1, 4, 4, 9, 0, 2, 7, 3], 'int32')
    const opt = tf.train.adam(1e-3)
    // Every native kernel family: gather, matmul, transpose, softmax, unary, reductions, broadcasting.
    const step = () =>
      opt.minimize(
        () => {
          const x = tf.gather(table, ids).reshape([2, 4, 16])
          const att = tf.softmax(tf.matMul(x, x.transpose([0, 2, 1])))
          const h = tf.tanh(tf.matMul(att, x).reshape([8, 16]).matMul(w))
          return tf.mean(tf.square(tf.sub(h, tf.max(h, 1, true))))
        },
        false,
        [w, table],
      )
    for (let i = 0; i < 100; i++) step()
    const before = tf.memory().numTensors
    const rss = process.memoryUsage().rss
    for (let i = 0; i < 500; i++) step()
    expect(tf.memory().numTensors).toBe(before)
    expect(process.memoryUsage().rss - rss).toBeLessThan(32 * 2 ** 20)
    opt.dispose()
    tf.dispose([w, table, ids])
  })
})
