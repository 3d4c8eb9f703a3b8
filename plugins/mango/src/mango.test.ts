import { computeLoss, initModel, type Model, paramTable, parseSpec, type TransformerSpec } from '@sprout/core'
import {
  describeLearnedFamilies,
  describeLearnedFitting,
  disposeBatch,
  expectGradientsMatchFiniteDifferences,
  expectParamsMatch,
  markovBatches,
  fitContext as testContext,
} from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import mango, { createMango, type MangoOptions, mangoOptions } from './index.js'

const base = {
  family: 'decoder',
  vocabSize: 16,
  maxSeqLen: 8,
  norm: 'layernorm',
  normPlacement: 'pre',
  activation: 'gelu',
} as const
const small = parseSpec({ ...base, dModel: 4, nLayers: 2, nHeads: 2, dFF: 8 })
const big = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 4, dFF: 16 })
const opts = (o: Partial<MangoOptions>): MangoOptions => mangoOptions.parse(o) as MangoOptions
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

/**
 * Independent reference for the fixed initialisation: every dModel-wide chunk of a target
 * tensor copies chunk (j mod n1) of the same source tensor; inside a chunk, index x reads
 * x mod D1 ('dup') or x when x < D1, else 0 ('pad'); target layer l reads source layer layerOf(l).
 */
function reference(
  source: Model,
  target: TransformerSpec,
  mode: 'dup' | 'pad',
  layerOf: (l: number) => number,
) {
  const D1 = source.spec.dModel
  const D2 = target.dModel
  const out: Record<string, Float32Array> = {}
  // map a target index along an axis to a source index (or -1 for zero)
  const mapAxis = (x: number, role: string, n1: number) => {
    if (role !== 'residual' && role !== 'attn' && role !== 'ffn') return x
    const chunks1 = n1 / D1
    const chunk = Math.floor(x / D2) % chunks1
    const inner = x % D2
    const m = mode === 'dup' ? inner % D1 : inner < D1 ? inner : -1
    return m < 0 ? -1 : chunk * D1 + m
  }
  for (const info of paramTable(target)) {
    const name =
      info.layer === null
        ? info.name
        : info.name.replace(`layers.${info.layer}.`, `layers.${layerOf(info.layer)}.`)
    const src = source.params[name]
    const data = src.dataSync()
    const vals = new Float32Array(info.shape.reduce((a, b) => a * b, 1))
    if (info.shape.length === 1) {
      for (let i = 0; i < info.shape[0]; i++) {
        const s = mapAxis(i, info.axes[0], src.shape[0])
        vals[i] = s < 0 ? 0 : data[s]
      }
    } else {
      const [a, b] = info.shape
      for (let i = 0; i < a; i++)
        for (let j = 0; j < b; j++) {
          const si = mapAxis(i, info.axes[0], src.shape[0])
          const sj = mapAxis(j, info.axes[1], src.shape[1]!)
          vals[i * b + j] = si < 0 || sj < 0 ? 0 : data[si * src.shape[1]! + sj]
        }
    }
    out[info.name] = vals
  }
  return out
}

const expectMatches = (model: Model, ref: Record<string, Float32Array>) => expectParamsMatch(model, ref, 1e-5)

const source = initModel(small, 7)
afterAll(() => dispose(source))

describe('mango initialisation reproduces the fixed methods', () => {
  it('duplicate + stack (rank 4, no noise) = blockwise Net2Net copies stacked [0,1,0,1]', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'stack' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (l) => l % 2),
    )
    dispose(model)
  })
  it('identity + interpolate (rank 2) = zero-padded blocks in order [0,0,1,1]', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, rank: 2, initNoise: 0, widthInit: 'identity', depthInit: 'interpolate' }),
    )
    expectMatches(
      model,
      reference(source, big, 'pad', (l) => Math.floor(l / 2)),
    )
    dispose(model)
  })
  it('per-bond ranks [2, 3, 1, 2] (no noise) = the same fixed method', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, rank: [2, 3, 1, 2], initNoise: 0, widthInit: 'duplicate' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (l) => l % 2),
    )
    dispose(model)
  })
  it('swiglu: gate blocks follow their own source blocks', async () => {
    const s = parseSpec({ ...base, activation: 'swiglu', dModel: 4, nLayers: 1, nHeads: 2, dFF: 8 })
    const t = parseSpec({ ...base, activation: 'swiglu', dModel: 8, nLayers: 2, nHeads: 4, dFF: 16 })
    const src = initModel(s, 3)
    const { model } = await mango.grow(
      src,
      t,
      testContext(1),
      opts({ steps: 0, rank: 1, initNoise: 0, widthInit: 'duplicate' }),
    )
    expectMatches(
      model,
      reference(src, t, 'dup', () => 0),
    )
    dispose(model)
    dispose(src)
  })
})

describe('mango operator parameters', () => {
  it('reports the tensor-ring parameter count for each rank', () => {
    for (const rank of [1, 2, 4]) {
      const op = createMango(
        small,
        big,
        null,
        { rank, widthInit: 'identity', depthInit: 'stack', initNoise: 0 },
        1,
      )
      // blocks: q, k, v, o 1 each + fc1, fc2 2 each = 8 in both; residual 4 -> 8; layers 2 -> 4
      expect(op.dims).toEqual({ B1: 8, B2: 8, I1: 4, I2: 8, O1: 4, O2: 8, L1: 2, L2: 4 })
      expect(op.parameterCount).toBe(rank * rank * (64 + 32 + 32 + 8))
      op.dispose()
    }
  })

  it('gradients reach every core and match finite differences', () => {
    const op = createMango(
      small,
      big,
      null,
      { rank: 2, widthInit: 'identity', depthInit: 'stack', initNoise: 0.3 },
      3,
    )
    const batch = markovBatches(big, 2, 8, 5).next()
    expectGradientsMatchFiniteDifferences(
      op.variables,
      () => computeLoss({ spec: big, params: op.materialise(source.params) }, batch).loss,
    )
    disposeBatch(batch)
    op.dispose()
  })
})

describe('mango fitting', () => {
  describeLearnedFitting(mango, {
    small,
    big,
    options: opts({ steps: 60, learningRate: 5e-3, rank: 2 }),
    heldOut: 8,
    margin: 0.02,
    extra: (report) => expect(report.details.rank).toBe(2),
  })
})

describe('mango across families and architectures', () => {
  describeLearnedFamilies(
    mango,
    { dModel: 4, nHeads: 2, dFF: 8 },
    { dModel: 8, nHeads: 4, dFF: 16 },
    opts({ rank: 2 }),
  )
})

describe('mango refusals', () => {
  it('refuses blocks that do not tile, mixture-of-experts and shrinking', () => {
    const odd = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 4, dFF: 20 })
    expect(() => mango.check(small, odd, opts({}))).toThrow(/multiples of dModel/)
    const moe = parseSpec({
      ...base,
      dModel: 8,
      nLayers: 4,
      nHeads: 4,
      dFF: 16,
      moe: { experts: 2, layers: [1] },
    })
    expect(() => mango.check(small, moe, opts({}))).toThrow(/mixture-of-experts/)
    expect(() => mango.check(big, small, opts({}))).toThrow(/never shrinks/)
    expect(mangoOptions.safeParse({ rank: 0 }).success).toBe(false)
  })
})
