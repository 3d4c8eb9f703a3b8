import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { count, expectClose, nativeMissing, onNativeBackend, rand, runOn } from './kernels.testutil.js'

/** f on cpu and on native from the same inputs: shapes, dtypes and values (within tol) equal. */
function agree(f: () => tf.Tensor | tf.Tensor[], tol: number): void {
  expectClose(runOn('native', f), runOn('cpu', f), tol)
}

describe.skipIf(nativeMissing)('native kernels against cpu', () => {
  onNativeBackend()

  const unary: Record<string, { f: (x: tf.Tensor) => tf.Tensor; lo?: number }> = {
    exp: { f: tf.exp },
    log: { f: tf.log, lo: 0.01 },
    tanh: { f: tf.tanh },
    sqrt: { f: tf.sqrt, lo: 0 },
    rsqrt: { f: tf.rsqrt, lo: 0.01 },
    square: { f: tf.square },
    neg: { f: tf.neg },
    sigmoid: { f: tf.sigmoid },
    relu: { f: tf.relu },
    erf: { f: tf.erf },
    abs: { f: tf.abs },
    reciprocal: { f: tf.reciprocal, lo: 0.1 },
  }
  for (const [name, { f, lo }] of Object.entries(unary))
    it(`${name}: values (odd, large, empty) and gradient equal cpu`, () => {
      for (const shape of [[7], [3, 11001], [0, 4]]) {
        const v = rand(count(shape), 11, lo ?? -3, 3)
        agree(() => f(tf.tensor(v, shape)), 2e-6)
      }
      const v = rand(35, 12, lo ?? -3, 3)
      agree(
        () =>
          tf.grad((x: tf.Tensor) => tf.sum(tf.mul(f(x), tf.range(0, 35).reshape([5, 7]))))(
            tf.tensor(v, [5, 7]),
          ),
        1e-5,
      )
    })

  it('exp, tanh and sigmoid (vectorised) keep infinities, NaN, underflow and tiny arguments of cpu', () => {
    const special = [
      Number.NEGATIVE_INFINITY,
      Number.POSITIVE_INFINITY,
      Number.NaN,
      1e-8,
      -1e-8,
      1e-30,
      0,
      -0.2499,
      0.2501,
    ]
    const wide = [-120, -104, -100, -90, -87.5, 88.5, 88.8, 100, ...special]
    for (const f of [tf.exp, tf.tanh, tf.sigmoid]) agree(() => f(tf.tensor1d(wide)), 2e-6)
    tf.setBackend('native')
    const tiny = tf.tidy(() => tf.tanh(tf.tensor1d([1e-8, -3e-6, 0.2])).dataSync())
    expect(Math.abs(tiny[0] / 1e-8 - 1)).toBeLessThan(1e-6)
    expect(Math.abs(tiny[1] / -3e-6 - 1)).toBeLessThan(1e-6)
  })

  it('tensors large enough to split across threads agree with cpu (unary, binary, reductions, softmax, transpose, gather)', () => {
    const shape = [300, 1031]
    const v = rand(count(shape), 30)
    const w = rand(1031, 31)
    agree(() => {
      const x = tf.tensor(v, shape)
      const row = tf.tensor(w, [1031])
      return [
        tf.square(x),
        tf.exp(x),
        tf.mul(x, row),
        tf.add(x, tf.transpose(tf.tensor(v, [1031, 300]))),
        tf.sum(x, 0),
        tf.sum(x, 1),
        tf.max(x, 0),
        tf.softmax(x),
        tf.transpose(x),
        tf.gather(x, tf.range(0, 300, 2, 'int32')),
        tf.unsortedSegmentSum(
          x,
          tf.tensor1d(
            Int32Array.from({ length: 300 }, (_, i) => i % 7),
            'int32',
          ),
          7,
        ),
      ]
    }, 2e-5)
  })

  it('unary ops of int32 tensors fall back to cpu', () => {
    agree(() => [tf.abs(tf.tensor1d([-3, 4], 'int32')), tf.neg(tf.tensor1d([5, -6], 'int32'))], 0)
  })

  const reductions = { sum: tf.sum, mean: tf.mean, max: tf.max, min: tf.min }
  const axesCases: [number[], number | number[] | undefined][] = [
    [[5, 7], undefined],
    [[5, 7], 1],
    [[5, 7], 0],
    [
      [4, 3, 5, 2],
      [0, 2],
    ],
    [
      [4, 3, 5, 2],
      [1, 3],
    ],
    [[4, 3, 5, 2], -1],
    [[2, 1, 3], 1],
    [[70, 1500], 0],
    [[1500, 70], 1],
    [[2048, 300], 0], // column sums split across threads (a bias's gradient)
    [[9], []],
  ]
  for (const [name, f] of Object.entries(reductions))
    for (const [shape, axis] of axesCases)
      it(`${name} of [${shape}] over ${JSON.stringify(axis)} (keepDims both ways) equals cpu`, () => {
        const v = rand(count(shape), 13)
        agree(() => [f(tf.tensor(v, shape), axis), f(tf.tensor(v, shape), axis, true)], 1e-5)
      })

  it('reductions: gradients, NaN propagation, int32 fallback', () => {
    const v = rand(24, 14)
    agree(
      () =>
        tf.grads((x: tf.Tensor) => tf.add(tf.sum(tf.max(x, 1)), tf.sum(tf.mul(tf.mean(x, [0, 2]), 3))))([
          tf.tensor(v, [2, 3, 4]),
        ]),
      1e-6,
    )
    agree(
      () => [
        tf.max(
          tf.tensor2d([
            [1, Number.NaN, 2],
            [3, 4, 5],
          ]),
          1,
        ),
        tf.sum(tf.tensor2d([[1, Number.NaN]]), 1),
      ],
      0,
    )
    agree(
      () => [
        tf.sum(
          tf.tensor2d(
            [
              [1, 2],
              [3, 4],
            ],
            [2, 2],
            'int32',
          ),
          0,
        ),
      ],
      0,
    )
  })

  for (const shape of [
    [4, 9],
    [3, 1, 130],
    [2, 3, 5, 11],
    [0, 6],
  ])
    it(`softmax of [${shape}] and its gradient equal cpu`, () => {
      const v = rand(count(shape), 15, -20, 20)
      agree(() => tf.softmax(tf.tensor(v, shape)), 1e-6)
      if (count(shape) > 0)
        agree(
          () =>
            tf.grad((x: tf.Tensor) =>
              tf.sum(tf.mul(tf.softmax(x), tf.tensor(rand(count(shape), 16), shape))),
            )(tf.tensor(v, shape)),
          1e-5,
        )
    })

  const perms: [number[], number[]][] = [
    [
      [3, 5],
      [1, 0],
    ],
    [
      [2, 3, 4, 5],
      [0, 2, 1, 3],
    ],
    [
      [2, 3, 4, 5],
      [3, 1, 0, 2],
    ],
    [
      [7, 1, 9],
      [2, 0, 1],
    ],
    [
      [0, 3],
      [1, 0],
    ],
    [
      [65, 129],
      [1, 0],
    ],
  ]
  for (const [shape, perm] of perms)
    it(`transpose [${shape}] by [${perm}] (float32 and int32) equals cpu`, () => {
      const v = rand(count(shape), 17)
      agree(
        () => [
          tf.transpose(tf.tensor(v, shape), perm),
          tf.transpose(
            tf.tensor(
              Int32Array.from(v, (x) => Math.round(100 * x)),
              shape,
              'int32',
            ),
            perm,
          ),
        ],
        0,
      )
    })

  it('gather along each axis, int32 data, repeated and empty indices, and its gradient equal cpu', () => {
    const v = rand(4 * 5 * 6, 18)
    const ids = tf.tensor1d([3, 0, 3, 1], 'int32')
    for (const axis of [0, 1, 2, -1])
      agree(
        () =>
          tf.gather(
            tf.tensor(v, [4, 5, 6]),
            [3, 0, 3, 1].map((i) => Math.min(i, 3)),
            axis,
          ),
        0,
      )
    agree(
      () =>
        tf.gather(
          tf.tensor(
            Int32Array.from(v, (x) => Math.round(10 * x)),
            [4, 5, 6],
            'int32',
          ),
          ids,
        ),
      0,
    )
    agree(
      () =>
        tf.gather(
          tf.tensor(v, [4, 5, 6]),
          tf.tensor2d(
            [
              [0, 1],
              [2, 3],
            ],
            [2, 2],
            'int32',
          ),
          1,
        ),
      0,
    )
    agree(() => tf.gather(tf.tensor(v, [4, 5, 6]), tf.tensor1d([], 'int32')), 0)
    agree(
      () =>
        tf.grad((x: tf.Tensor) =>
          tf.sum(tf.mul(tf.gather(x, ids), tf.range(0, 4 * 5 * 6).reshape([4, 5, 6]))),
        )(tf.tensor(v, [4, 5, 6])),
      1e-6,
    )
    ids.dispose()
  })

  it('an out-of-range gather index raises the cpu error', () => {
    tf.setBackend('native')
    expect(() =>
      tf.tidy(() => tf.gather(tf.tensor1d([1, 2, 3]), tf.tensor1d([0, 3], 'int32')).dataSync()),
    ).toThrow(/index/)
  })

  it('strided slice, unpack and split along inner axes (float32, int32, NaN, large, empty) and their gradients equal cpu', () => {
    const shape = [3, 4, 5, 6]
    const v = rand(count(shape), 41)
    v[7] = Number.NaN
    v[11] = Number.POSITIVE_INFINITY
    const ints = Int32Array.from(v, (x) => (Number.isFinite(x) ? Math.round(10 * x) : 0))
    const x = () => tf.tensor(v, shape)
    // Cut along one inner axis, along several, with size -1, and a contiguous cut (cpu's view).
    for (const [begin, size] of [
      [
        [0, 1, 0, 0],
        [3, 2, 5, 6],
      ],
      [
        [1, 0, 2, 3],
        [2, 4, 3, -1],
      ],
      [
        [0, 0, 0, 5],
        [-1, -1, -1, 1],
      ],
      [
        [1, 0, 0, 0],
        [1, 4, 5, 6],
      ],
      [
        [0, 1, 0, 0],
        [3, 0, 5, 6],
      ],
    ])
      agree(() => tf.slice(x(), begin, size), 0)
    agree(() => tf.slice(tf.tensor(ints, shape, 'int32'), [0, 0, 1, 0], [3, 4, 3, 6]), 0)
    for (const axis of [0, 1, 2, 3, -1]) agree(() => tf.unstack(x(), axis), 0)
    agree(() => tf.unstack(tf.tensor(ints, shape, 'int32'), 3), 0)
    for (const axis of [1, 3]) agree(() => tf.split(x(), [2, 1, shape[axis] - 3], axis), 0)
    agree(() => tf.split(x(), 2, 3), 0) // equal parts along the last axis
    // Above the threading threshold: 300 x 1031 x 4, unpacked along the last axis.
    const big = rand(300 * 1031 * 4, 42)
    agree(() => tf.unstack(tf.tensor(big, [300, 1031, 4]), 2), 0)
    // Gradients: unstack's is stack, concat's is a split along the concatenated axis.
    agree(
      () =>
        tf.grad((t: tf.Tensor) => {
          const [a, b] = tf.split(t, [2, 4], 3)
          return tf.sum(tf.mul(tf.concat([b, a], 3), tf.range(0, count(shape)).reshape(shape)))
        })(tf.tensor(rand(count(shape), 43), shape)),
      1e-6,
    )
  })

  it('pad (constant, before/after on every axis, int32, NaN, large) and the gradient of a slice equal cpu', () => {
    const shape = [3, 4, 5]
    const v = rand(count(shape), 51)
    v[3] = Number.NaN
    for (const [paddings, c] of [
      [
        [
          [0, 0],
          [0, 0],
          [0, 0],
        ],
        0,
      ],
      [
        [
          [1, 2],
          [0, 3],
          [2, 1],
        ],
        0,
      ],
      [
        [
          [0, 1],
          [2, 0],
          [0, 0],
        ],
        -1.5,
      ],
    ] as [[number, number][], number][])
      agree(() => tf.pad(tf.tensor(v, shape), paddings, c), 0)
    agree(
      () =>
        tf.pad(
          tf.tensor(
            Int32Array.from(v, (x) => (Number.isNaN(x) ? 0 : Math.round(10 * x))),
            shape,
            'int32',
          ),
          [
            [1, 0],
            [0, 0],
            [0, 2],
          ],
          7,
        ),
      0,
    )
    agree(() => tf.pad(tf.tensor1d([1, 2, 3]), [[2, 1]]), 0)
    const big = rand(300 * 1031, 52)
    agree(
      () =>
        tf.pad(tf.tensor(big, [300, 1031]), [
          [1, 1],
          [3, 0],
        ]),
      0,
    )
    agree(
      () =>
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.slice(t, [1, 0, 2], [2, 3, 3]), 3)))(tf.tensor(v, shape)),
      0,
    )
  })

  it('a strided slice picks the hand-computed values, and an out-of-bounds one throws as on cpu', () => {
    tf.setBackend('native')
    expect(() => tf.tidy(() => tf.slice(tf.zeros([3, 4]), [1, 1], [1, 4]))).toThrow(/slice/i)
    expect(() => tf.tidy(() => tf.slice(tf.zeros([3, 4]), [0, -1], [2, 2]))).toThrow()
    const got = tf.tidy(() => tf.slice(tf.range(0, 24).reshape([2, 3, 4]), [0, 1, 1], [2, 2, 2]).dataSync())
    expect(Array.from(got)).toEqual([5, 6, 9, 10, 17, 18, 21, 22])
    const cols = tf.tidy(() =>
      tf.unstack(tf.range(0, 6).reshape([2, 3]), 1).map((t) => Array.from(t.dataSync())),
    )
    expect(cols).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
    ])
  })

  it('a matmul with a bias (transposes, [n] and [1, n] biases, NaN, empty, large) and its gradients equal cpu', () => {
    // [a shape, b shape, transposeA, transposeB, bias shape]: the per-column biases take the
    // one-call bias-in-the-product path; an [m, n] bias and a batched product take product-then-add.
    const cases: [number[], number[], boolean, boolean, number[]][] = [
      [[3, 5], [5, 4], false, false, [4]],
      [[5, 3], [5, 4], true, false, [1, 4]],
      [[3, 5], [4, 5], false, true, [4]],
      [[5, 3], [4, 5], true, true, [4]],
      [[3, 5], [5, 4], false, false, [3, 4]],
      [[2, 3, 5], [2, 5, 4], false, false, [4]],
      [[600, 70], [70, 500], false, false, [500]], // 300k outputs: the bias fill is threaded
      [[4, 0], [0, 3], false, false, [3]], // empty inner dimension: the output is the bias
      [[0, 5], [5, 3], false, false, [3]],
    ]
    for (const [sa, sb, ta, tb, sbias] of cases) {
      const [av, bv, biasv] = [
        rand(count(sa), 31, -0.5, 0.5),
        rand(count(sb), 32, -0.5, 0.5),
        rand(count(sbias), 33),
      ]
      const a = () => tf.tensor(av, sa)
      const b = () => tf.tensor(bv, sb)
      const bias = () => tf.tensor(biasv, sbias)
      const matMul = (x: tf.Tensor, w: tf.Tensor, c: tf.Tensor) =>
        tf.fused.matMul({ a: x, b: w, bias: c, transposeA: ta, transposeB: tb })
      agree(() => {
        const y = matMul(a(), b(), bias())
        // Weighted by fixed random values, so each gradient is an independent product.
        const r = tf.tensor(rand(y.size, 34), y.shape)
        return [y, ...tf.grads((x, w, c) => tf.sum(tf.mul(matMul(x, w, c), r)))([a(), b(), bias()])]
      }, 1e-5)
      // A NaN in the bias reaches its whole column, as on cpu.
      const withNaN = biasv.slice()
      withNaN[biasv.length - 1] = Number.NaN
      agree(() => matMul(a(), b(), tf.tensor(withNaN, sbias)), 1e-5)
    }
  })

  it('unsortedSegmentSum with repeated, missing and out-of-range ids equals cpu', () => {
    const v = rand(6 * 3, 19)
    const ids = [2, 0, 2, 4, -1, 2]
    agree(() => tf.unsortedSegmentSum(tf.tensor(v, [6, 3]), tf.tensor1d(ids, 'int32'), 5), 1e-6)
    const big = rand(512 * 128, 20)
    const bigIds = Int32Array.from({ length: 512 }, (_, i) => (i * 37) % 100)
    agree(() => tf.unsortedSegmentSum(tf.tensor(big, [512, 128]), tf.tensor1d(bigIds, 'int32'), 100), 1e-5)
  })

  it('a small GPT-style step (layer norm, GELU, attention, cross-entropy) has the same loss and gradients as cpu', () => {
    const B = 2
    const T = 5
    const D = 8
    const V = 11
    const emb = rand(V * D, 21, -0.5, 0.5)
    const w1 = rand(D * 4 * D, 22, -0.3, 0.3)
    const w2 = rand(4 * D * D, 23, -0.3, 0.3)
    const toks = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % V)
    agree(() => {
      const E = tf.tensor(emb, [V, D])
      const W1 = tf.tensor(w1, [D, 4 * D])
      const W2 = tf.tensor(w2, [4 * D, D])
      const ids = tf.tensor(toks, [B * T], 'int32')
      const f = (e: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => {
        const x = tf.gather(e, ids).reshape([B, T, D])
        const { mean, variance } = tf.moments(x, 2, true)
        const h = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5)))
        const q = h.reshape([B, 1, T, D])
        const att = tf
          .matMul(tf.softmax(tf.div(tf.matMul(q, q, false, true), Math.sqrt(D))), q)
          .reshape([B * T, D])
        const u = tf.matMul(att, a)
        const g = tf.mul(
          tf.mul(u, 0.5),
          tf.add(1, tf.tanh(tf.mul(tf.add(u, tf.mul(tf.pow(u, 3), 0.044715)), 0.79788456))),
        )
        const logits = tf.matMul(tf.add(tf.matMul(g, b), att), e, false, true)
        return tf.losses.softmaxCrossEntropy(tf.oneHot(ids, V), logits)
      }
      const { value, grads } = tf.valueAndGrads(f)([E, W1, W2])
      return [value, ...grads]
    }, 2e-5)
  })
})
