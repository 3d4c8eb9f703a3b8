import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { selectBackend } from './backend.js'
import { attention, computeLoss, crossEntropy, forward, loss, normalize } from './forward.js'
import { disposeParams, initModel, type Model, type Params } from './params.js'
import { activate } from './primitives.js'
import { type RefParams, refActivation, referenceForward } from './reference.testutil.js'
import { parseSpec } from './spec.js'

beforeAll(async () => {
  await selectBackend('cpu')
})

const text = { vocabSize: 11, maxSeqLen: 6, dModel: 8, nLayers: 2, nHeads: 2, dFF: 12 }
const variants = [
  { family: 'decoder', ...text, activation: 'gelu_tanh' },
  { family: 'decoder', ...text, activation: 'gelu', tieEmbeddings: false, bias: false, norm: 'rmsnorm' },
  { family: 'decoder', ...text, activation: 'swiglu', normPlacement: 'post', headDim: 3 },
  { family: 'encoder', ...text, activation: 'relu', normPlacement: 'post' },
  { family: 'encoder', ...text, activation: 'swiglu', norm: 'rmsnorm', bias: false },
  {
    family: 'vit',
    image: { size: 4, patch: 2, channels: 2, classes: 5 },
    dModel: 8,
    nLayers: 1,
    nHeads: 2,
    dFF: 12,
  },
  {
    family: 'vit',
    image: { size: 4, patch: 2, channels: 1, classes: 3 },
    dModel: 8,
    nLayers: 2,
    nHeads: 4,
    dFF: 8,
    normPlacement: 'post',
    activation: 'gelu',
  },
]

function toRef(params: Params): RefParams {
  const out: RefParams = {}
  for (const [k, t] of Object.entries(params)) out[k] = { shape: t.shape, data: t.dataSync() as Float32Array }
  return out
}

/** Perturbs every parameter (norms and biases included) so the check is not blind to them. */
function perturbed(model: Model, seed: number): Model {
  const params: Params = {}
  for (const [k, t] of Object.entries(model.params))
    params[k] = tf.tidy(() => tf.add(t, tf.randomNormal(t.shape, 0, 0.3, 'float32', seed + k.length)))
  return { spec: model.spec, params }
}

describe('forward pass against an independent loop-based reference', () => {
  for (const v of variants) {
    const spec = parseSpec(v)
    it(`${spec.family} ${spec.normPlacement}-${spec.norm} ${spec.activation} bias=${spec.bias} tied=${spec.tieEmbeddings}`, () => {
      const base = initModel(spec, 7)
      const model = perturbed(base, 3)
      disposeParams(base.params)
      const before = tf.memory().numTensors
      let input: tf.Tensor
      let refInputs: (number[] | number[][][])[]
      if (spec.family === 'vit') {
        const { size, channels } = spec.image!
        const x = tf.randomNormal([2, size, size, channels], 0, 1, 'float32', 5)
        refInputs = x.arraySync() as number[][][][]
        input = x
      } else {
        refInputs = [
          [1, 4, 9, 0, 10, 3],
          [2, 2, 7, 5, 1, 8],
        ]
        input = tf.tensor2d(refInputs as number[][], undefined, 'int32')
      }
      const logits = forward(model, input)
      const got = logits.arraySync() as number[][][] | number[][]
      const ref = toRef(model.params)
      for (let b = 0; b < 2; b++) {
        const want = referenceForward(spec, ref, refInputs[b])
        const row = spec.family === 'vit' ? [(got as number[][])[b]] : (got as number[][][])[b]
        const maxRef = Math.max(...want.flat().map(Math.abs))
        expect(maxRef).toBeGreaterThan(0.05)
        for (let t = 0; t < want.length; t++)
          for (let j = 0; j < want[t].length; j++)
            expect(Math.abs(row[t][j] - want[t][j])).toBeLessThan(2e-4 * Math.max(1, maxRef))
      }
      const expectedShape = spec.family === 'vit' ? [2, spec.image!.classes] : [2, 6, spec.vocabSize]
      expect(logits.shape).toEqual(expectedShape)
      tf.dispose([logits, input])
      expect(tf.memory().numTensors).toBe(before)
      disposeParams(model.params)
    })
  }
})

describe('building blocks against hand-computed values', () => {
  it('GELU (erf and tanh) and SwiGLU gate', () => {
    const x = tf.tensor1d([-2, -0.5, 0, 1, 3])
    // Φ(x)·x from tables: gelu(1) = 0.841344746, gelu(-0.5) = -0.154268772, gelu(3) = 2.995950
    expect(Array.from(activate(x, 'gelu').dataSync())).toEqual(
      [-0.04550026, -0.15426877, 0, 0.84134475, 2.99595031].map((v) => expect.closeTo(v, 5)),
    )
    expect(activate(tf.scalar(1), 'gelu_tanh').dataSync()[0]).toBeCloseTo(0.841192, 6)
    expect(activate(tf.scalar(2), 'swiglu').dataSync()[0]).toBeCloseTo(2 / (1 + Math.exp(-2)), 6)
    expect(refActivation(1, 'gelu')).toBeCloseTo(0.841344746, 8)
  })
  it('LayerNorm and RMSNorm', () => {
    const spec = parseSpec({ family: 'decoder', ...text, normEps: 1e-5 })
    // [1,2,3,4]: mean 2.5, var 1.25 -> (x-2.5)/sqrt(1.25+1e-5)
    const ln = normalize(
      tf.tensor2d([[1, 2, 3, 4]]),
      spec,
      tf.tensor1d([1, 1, 2, 1]),
      tf.tensor1d([0, 0, 0, 1]),
    )
    const s = Math.sqrt(1.25 + 1e-5)
    expect(Array.from(ln.dataSync())).toEqual(
      [-1.5 / s, -0.5 / s, 1 / s, 1.5 / s + 1].map((v) => expect.closeTo(v, 5)),
    )
    const rms = normalize(tf.tensor2d([[3, 4]]), { ...spec, norm: 'rmsnorm' }, tf.tensor1d([1, 2]))
    const r = Math.sqrt(12.5 + 1e-5)
    expect(Array.from(rms.dataSync())).toEqual([3 / r, 8 / r].map((v) => expect.closeTo(v, 5)))
  })
  it('attention of a single head on a hand-computed 2-token example', () => {
    // D=2, one head, identity projections, no bias: softmax over q·k/sqrt(2)
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 3,
      maxSeqLen: 2,
      dModel: 2,
      nLayers: 1,
      nHeads: 1,
      dFF: 2,
      bias: false,
    })
    const eye = tf.tensor2d([
      [1, 0],
      [0, 1],
    ])
    const params = { 'a.q.weight': eye, 'a.k.weight': eye, 'a.v.weight': eye, 'a.o.weight': eye }
    const x = tf.tensor3d([
      [
        [1, 0],
        [0, 2],
      ],
    ])
    // encoder (non-causal): token 0 scores [1/√2, 0], token 1 scores [0, 4/√2]
    const enc = tf.tidy(() => attention(x, spec, params, 'a', false))
    const w0 = Math.exp(1 / Math.SQRT2) / (Math.exp(1 / Math.SQRT2) + 1)
    const w1 = 1 / (1 + Math.exp(4 / Math.SQRT2))
    const got = enc.arraySync() as number[][][]
    expect(got[0][0][0]).toBeCloseTo(w0, 5)
    expect(got[0][0][1]).toBeCloseTo(2 * (1 - w0), 5)
    expect(got[0][1][0]).toBeCloseTo(w1, 5)
    expect(got[0][1][1]).toBeCloseTo(2 * (1 - w1), 5)
  })
  it('cross-entropy, plain and weighted', () => {
    const logits = tf.tensor2d([
      [0, 0, Math.log(2)],
      [1, 1, 1],
    ])
    // p(target 2 | row 0) = 2/4, p(target 0 | row 1) = 1/3
    expect(crossEntropy(logits, tf.tensor1d([2, 0], 'int32')).dataSync()[0]).toBeCloseTo(
      (Math.log(2) + Math.log(3)) / 2,
      5,
    )
    expect(crossEntropy(logits, tf.tensor1d([2, 0], 'int32'), tf.tensor1d([0, 1])).dataSync()[0]).toBeCloseTo(
      Math.log(3),
      5,
    )
  })
})

describe('gradients', () => {
  it('match central finite differences (float64-free check on a tiny decoder)', () => {
    const spec = parseSpec({
      family: 'decoder',
      vocabSize: 7,
      maxSeqLen: 4,
      dModel: 4,
      nLayers: 1,
      nHeads: 2,
      dFF: 6,
      activation: 'gelu',
    })
    const model = perturbed(initModel(spec, 2), 9)
    const batch = {
      inputs: tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32'),
      targets: tf.tensor2d([[2, 3, 4, 5]], undefined, 'int32'),
    }
    const names = ['layers.0.attn.q.weight', 'layers.0.mlp.fc2.bias', 'layers.0.norm1.weight', 'embed.tokens']
    const vars = Object.fromEntries(Object.entries(model.params).map(([k, t]) => [k, tf.variable(t)]))
    const vm: Model = { spec, params: vars }
    const { grads, value } = tf.variableGrads(
      () => loss(vm, batch),
      names.map((n) => vars[n]),
    )
    const h = 1e-2
    for (const n of names) {
      const g = grads[vars[n].name].dataSync()
      const base = model.params[n].dataSync()
      for (const i of [0, base.length - 1]) {
        const lossAt = (delta: number) => {
          const data = Float32Array.from(base)
          data[i] += delta
          const p = { ...model.params, [n]: tf.tensor(data, model.params[n].shape) }
          const l = loss({ spec, params: p }, batch).dataSync()[0]
          p[n].dispose()
          return l
        }
        const fd = (lossAt(h) - lossAt(-h)) / (2 * h)
        expect(Math.abs(g[i] - fd)).toBeLessThan(2e-3 + 0.02 * Math.abs(fd))
      }
    }
    tf.dispose([value, ...Object.values(grads), ...Object.values(vars), batch.inputs, batch.targets])
    disposeParams(model.params)
  })
})

describe('validation and determinism', () => {
  const spec = parseSpec({ family: 'decoder', ...text })
  it('rejects bad inputs with clear errors', () => {
    const m = initModel(spec, 1)
    expect(() => forward(m, tf.tensor2d([[1, 11]], undefined, 'int32'))).toThrow(
      /token id 11 is outside the vocabulary \[0, 11\)/,
    )
    expect(() => forward(m, tf.tensor2d([[1, 2, 3, 4, 5, 6, 7]], undefined, 'int32'))).toThrow(
      /exceeds maxSeqLen 6/,
    )
    expect(() => forward(m, tf.tensor2d([[1, 2]]))).toThrow(/int32 token ids/)
    disposeParams(m.params)
  })
  it('same seed gives the same weights, another seed different ones', () => {
    const a = initModel(spec, 5)
    const b = initModel(spec, 5)
    const c = initModel(spec, 6)
    for (const k of Object.keys(a.params))
      expect(Array.from(a.params[k].dataSync())).toEqual(Array.from(b.params[k].dataSync()))
    expect(Array.from(a.params['layers.0.attn.q.weight'].dataSync())).not.toEqual(
      Array.from(c.params['layers.0.attn.q.weight'].dataSync()),
    )
    for (const m of [a, b, c]) disposeParams(m.params)
  })
  it('computeLoss leaks nothing and is near log(vocab) at init', () => {
    const m = initModel(spec, 1)
    const batch = {
      inputs: tf.tensor2d([[1, 2, 3]], undefined, 'int32'),
      targets: tf.tensor2d([[2, 3, 4]], undefined, 'int32'),
    }
    const before = tf.memory().numTensors
    const { loss: l, ce } = computeLoss(m, batch)
    expect(l.dataSync()[0]).toBeCloseTo(Math.log(11), 1)
    tf.dispose([l, ce])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([batch.inputs, batch.targets])
    disposeParams(m.params)
  })
})

afterAll(() => {})
