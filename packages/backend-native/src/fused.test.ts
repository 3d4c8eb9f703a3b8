import {
  computeLoss,
  crossEntropy,
  FUSED_KERNELS,
  fusedAttention,
  fusedCrossEntropy,
  fusedGelu,
  fusedNorm,
  hasFusedKernels,
  initModel,
  parseSpec,
  setFusedKernels,
  skipUnless,
} from '@sprout/core'
import { AdamW } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadAddon, registerNativeBackend } from './index.js'
import { count, expectClose, rand, runOn } from './kernels.testutil.js'

const missing = skipUnless(loadAddon().ok, 'the native addon over OpenBLAS (npm run setup builds it)')

const tensor = (shape: number[], seed: number, lo = -2, hi = 2) =>
  tf.tensor(rand(count(shape), seed, lo, hi), shape)

/** `fused` on native (its fused kernels) against `composite` on the cpu backend (the reference ops). */
function agree(
  fused: () => tf.Tensor | tf.Tensor[],
  composite: () => tf.Tensor | tf.Tensor[],
  tol: number,
): void {
  const want = runOn('cpu', composite)
  const before = tf.memory().numTensors
  const got = runOn('native', fused)
  expect(tf.memory().numTensors).toBe(before)
  expectClose(got, want, tol)
}

/** Value and gradients (w.r.t. every input) of Σ f(inputs)·weights, weights fixed per element. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: () => tf.Tensor[]): tf.Tensor[] {
  const xs = inputs()
  const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) => {
    const y = f(...args)
    return tf.sum(tf.mul(y, tf.tensor(rand(y.size, 99, -1, 1), y.shape)))
  })(xs)
  return [f(...xs), value, ...grads]
}

function compositeNorm(
  x: tf.Tensor,
  scale: tf.Tensor,
  shift: tf.Tensor | undefined,
  eps: number,
  rms: boolean,
) {
  const axis = x.rank - 1
  const y = rms
    ? tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), axis, true), eps)))
    : (() => {
        const { mean, variance } = tf.moments(x, axis, true)
        return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)))
      })()
  return shift ? tf.add(tf.mul(y, scale), shift) : tf.mul(y, scale)
}

function compositeGelu(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI))
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)))
}

function compositeAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  H: number,
  KV: number,
  causal: boolean,
): tf.Tensor {
  const [B, T, D] = q.shape
  const hd = D / H
  const split = (t: tf.Tensor, heads: number) => t.reshape([B, T, heads, hd]).transpose([0, 2, 1, 3])
  // Key/value head j serves query heads j·g .. j·g + g − 1.
  const repeat = (t: tf.Tensor) =>
    tf.stack(
      Array.from({ length: H }, (_, h) =>
        tf.slice(t, [0, (h / (H / KV)) | 0, 0, 0], [B, 1, T, hd]).squeeze([1]),
      ),
      1,
    )
  let scores = tf.mul(tf.matMul(split(q, H), repeat(split(k, KV)), false, true), 1 / Math.sqrt(hd))
  if (causal) scores = tf.add(scores, tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), -1e9))
  return tf
    .matMul(tf.softmax(scores), repeat(split(v, KV)))
    .transpose([0, 2, 1, 3])
    .reshape([B, T, D])
}

describe.skipIf(missing)('fused kernels (native) against the composite ops (cpu)', () => {
  let previous = ''
  beforeAll(() => {
    previous = tf.getBackend() ?? 'cpu'
    expect(registerNativeBackend().ok).toBe(true)
    tf.setBackend('native')
    expect(hasFusedKernels(...Object.values(FUSED_KERNELS))).toBe(true)
  })
  afterAll(() => {
    setFusedKernels(true)
    tf.setBackend(previous)
  })

  for (const shape of [[7], [3, 1001], [2, 3, 64], [0, 4]])
    it(`GELU of [${shape}]: values and gradient`, () => {
      const inputs = () => [tensor(shape, 1, -6, 6)]
      agree(
        () => valueAndGrads(fusedGelu, inputs),
        () => valueAndGrads(compositeGelu, inputs),
        2e-6,
      )
    })

  for (const rms of [false, true])
    for (const withShift of [true, false])
      for (const shape of [
        [5, 7],
        [2, 3, 129],
        [1, 1],
      ])
        it(`${rms ? 'RMSNorm' : 'LayerNorm'} ${withShift ? 'with' : 'without'} shift of [${shape}]: values and gradients`, () => {
          const D = shape.at(-1)!
          const inputs = () => {
            const xs = [tensor(shape, 2, -3, 5), tensor([D], 3, 0.5, 1.5)]
            return withShift ? [...xs, tensor([D], 4)] : xs
          }
          agree(
            () => valueAndGrads((x, s, b) => fusedNorm(x, s, b, 1e-5, rms), inputs),
            () => valueAndGrads((x, s, b) => compositeNorm(x, s, b, 1e-5, rms), inputs),
            2e-5,
          )
        })

  for (const causal of [true, false])
    for (const [B, T, H, KV, hd] of [
      [2, 5, 3, 3, 4],
      [1, 1, 1, 1, 8],
      [3, 33, 2, 2, 5],
      [2, 64, 4, 4, 16],
      [2, 9, 6, 2, 4],
      [1, 17, 4, 1, 8],
      [2, 128, 2, 2, 8], // causal: two row blocks of 64
      [1, 150, 4, 2, 8], // causal: three row blocks, the last partial, grouped-query
    ])
      it(`attention B${B} T${T} H${H} KV${KV} hd${hd} ${causal ? 'causal' : 'bidirectional'}: values and gradients`, () => {
        const inputs = () => [
          tensor([B, T, H * hd], 11, -1.5, 1.5),
          tensor([B, T, KV * hd], 12, -1.5, 1.5),
          tensor([B, T, KV * hd], 13, -1.5, 1.5),
        ]
        agree(
          () => valueAndGrads((q, k, v) => fusedAttention(q, k, v, H, KV, causal), inputs),
          () => valueAndGrads((q, k, v) => compositeAttention(q, k, v, H, KV, causal), inputs),
          2e-5,
        )
      })

  it('attention gradient matches central finite differences of the fused forward', () => {
    tf.setBackend('native')
    const [B, T, H, hd] = [1, 4, 2, 3]
    const D = H * hd
    const q = rand(B * T * D, 31)
    const k = rand(B * T * D, 32)
    const v = rand(B * T * D, 33)
    const w = rand(B * T * D, 34)
    const lossOf = (qv: Float32Array) =>
      tf.tidy(() => {
        const ctx = fusedAttention(
          tf.tensor(qv, [B, T, D]),
          tf.tensor(k, [B, T, D]),
          tf.tensor(v, [B, T, D]),
          H,
          H,
          true,
        )
        return tf.sum(tf.mul(ctx, tf.tensor(w, [B, T, D]))).dataSync()[0]
      })
    const grad = tf.tidy(() =>
      tf
        .grad((x: tf.Tensor) =>
          tf.sum(
            tf.mul(
              fusedAttention(x, tf.tensor(k, [B, T, D]), tf.tensor(v, [B, T, D]), H, H, true),
              tf.tensor(w, [B, T, D]),
            ),
          ),
        )(tf.tensor(q, [B, T, D]))
        .dataSync(),
    )
    const h = 1e-2
    for (let i = 0; i < q.length; i++) {
      const up = q.slice()
      const down = q.slice()
      up[i] += h
      down[i] -= h
      expect(grad[i]).toBeCloseTo((lossOf(up) - lossOf(down)) / (2 * h), 3)
    }
  })

  for (const weighted of [false, true])
    it(`cross-entropy ${weighted ? 'weighted' : 'mean'} over [37, 50] with an out-of-range target: loss and gradient`, () => {
      const N = 37
      const C = 50
      const targets = Int32Array.from({ length: N }, (_, i) => (i === 5 ? C + 3 : (i * 13) % C))
      const inputs = () => [tensor([N, C], 41, -8, 8)]
      const weights = () => (weighted ? tf.tensor1d(rand(N, 42, 0, 1)) : undefined)
      const lossWith = (use: (l: tf.Tensor) => tf.Tensor) => () => {
        const [l] = inputs()
        const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => use(x))([l])
        return [value, ...grads]
      }
      agree(
        lossWith((l) => fusedCrossEntropy(l as tf.Tensor2D, tf.tensor1d(targets, 'int32'), weights())),
        lossWith((l) => crossEntropy(l, tf.tensor1d(targets, 'int32'), weights())),
        2e-5,
      )
    })

  it('NaN inputs give NaN outputs (GELU, norm, cross-entropy)', () => {
    tf.setBackend('native')
    tf.tidy(() => {
      expect(Number.isNaN(fusedGelu(tf.tensor1d([Number.NaN, 1])).dataSync()[0])).toBe(true)
      const norm = fusedNorm(
        tf.tensor2d([[Number.NaN, 1, 2]]),
        tf.ones([3]),
        undefined,
        1e-5,
        false,
      ).dataSync()
      expect(Array.from(norm).every(Number.isNaN)).toBe(true)
      const ce = fusedCrossEntropy(tf.tensor2d([[Number.NaN, 1]]), tf.tensor1d([1], 'int32'))
      expect(Number.isNaN(ce.dataSync()[0])).toBe(true)
    })
  })

  const decoders = {
    'GPT-2-style': {
      spec: { activation: 'gelu_tanh', positional: 'learned', bias: true, tieEmbeddings: true },
      kernels: [
        'gelu',
        'geluGrad',
        'layerNorm',
        'layerNormGrad',
        'attention',
        'attentionGrad',
        'crossEntropy',
        'crossEntropyGrad',
      ],
    },
    'LLaMA-style (RMSNorm, SwiGLU, rotary, grouped-query)': {
      spec: {
        norm: 'rmsnorm',
        activation: 'swiglu',
        positional: 'rotary',
        nKVHeads: 1,
        bias: false,
        tieEmbeddings: false,
      },
      kernels: [
        'layerNorm',
        'layerNormGrad',
        'attention',
        'attentionGrad',
        'crossEntropy',
        'crossEntropyGrad',
      ],
    },
  } as const
  for (const [name, { spec: fields, kernels }] of Object.entries(decoders))
    it(`a ${name} decoder's training loss and gradients equal the composite path, and the fused kernels run`, async () => {
      const spec = parseSpec({
        family: 'decoder',
        vocabSize: 29,
        maxSeqLen: 12,
        dModel: 24,
        nLayers: 2,
        nHeads: 3,
        dFF: 96,
        normPlacement: 'pre',
        ...fields,
      })
      const ids = (f: (i: number) => number) =>
        tf.tensor2d(
          Int32Array.from({ length: 24 }, (_, i) => f(i) % 29),
          [2, 12],
          'int32',
        )
      const step = () => {
        const model = initModel(spec, 3)
        const names = Object.keys(model.params)
        const { value, grads } = tf.valueAndGrads(
          (...ps: tf.Tensor[]) =>
            computeLoss(
              { spec, params: Object.fromEntries(names.map((n, i) => [n, ps[i]])) },
              { inputs: ids((i) => i * 7), targets: ids((i) => i * 5 + 3) },
              { training: true },
            ).loss,
        )(names.map((n) => model.params[n]))
        return [value, ...grads]
      }
      setFusedKernels(false)
      const want = runOn('native', step)
      setFusedKernels(true)
      const got = runOn('native', step)
      expectClose(got, want, 1e-4)
      tf.setBackend('native')
      const { kernelNames } = await tf.profile(() => {
        tf.dispose(step())
      })
      for (const k of kernels) expect(kernelNames).toContain(FUSED_KERNELS[k])
    })

  it("the trainer's AdamW takes the fused kernel and matches the composite update over three steps", () => {
    tf.setBackend('native')
    const trajectory = (fused: boolean) => {
      setFusedKernels(fused)
      const init = [tensor([17, 9], 51), tensor([9], 52)]
      const vars = { 'w.weight': tf.variable(init[0]), 'w.bias': tf.variable(init[1]) }
      tf.dispose(init)
      const opt = new AdamW(vars, { weightDecay: 0.1 })
      for (let s = 0; s < 3; s++)
        tf.tidy(() => opt.apply({ 'w.weight': tensor([17, 9], 60 + s), 'w.bias': tensor([9], 70 + s) }, 1e-2))
      const state = Object.values(opt.state())
      const out = [vars['w.weight'], vars['w.bias'], ...state].map((t) => ({
        shape: t.shape,
        dtype: t.dtype,
        data: t.dataSync(),
      }))
      opt.dispose()
      tf.dispose([...Object.values(vars), ...state])
      return out
    }
    const before = tf.memory().numTensors
    const composite = trajectory(false)
    const fused = trajectory(true)
    expect(tf.memory().numTensors).toBe(before)
    expectClose(fused, composite, 1e-6)
  })
})
