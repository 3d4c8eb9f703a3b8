import {
  type AxisRole,
  computeLoss,
  GrowthError,
  initModel,
  type Model,
  paramTable,
  parseSpec,
  type TransformerSpec,
} from '@sprout/core'
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
import ligo, { createLigo, type LigoOptions, ligoOptions } from './index.js'

const base = {
  family: 'decoder',
  vocabSize: 16,
  maxSeqLen: 8,
  norm: 'layernorm',
  normPlacement: 'pre',
  activation: 'gelu',
} as const
const small = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
const big = parseSpec({ ...base, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 })

const opts = (o: Partial<LigoOptions>): LigoOptions => ligoOptions.parse(o) as LigoOptions
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

/** Axis size of a role in a spec (vocab/position/... are never grown). */
function axisSize(spec: TransformerSpec, role: AxisRole, n: number): number {
  if (role === 'residual') return spec.dModel
  if (role === 'attn') return spec.nHeads * spec.headDim
  if (role === 'ffn') return spec.dFF
  return n
}

/**
 * Independent reference: Net2Net-style duplication without rescaling (index i of a grown axis
 * reads source index i mod n1), or zero padding of new indices ('pad'); depth by a layer map.
 */
function reference(
  source: Model,
  target: TransformerSpec,
  mode: 'dup' | 'pad',
  layerOf: (i: number) => number,
) {
  const out: Record<string, Float32Array> = {}
  for (const info of paramTable(target)) {
    const srcName =
      info.layer === null
        ? info.name
        : info.name.replace(`layers.${info.layer}.`, `layers.${layerOf(info.layer)}.`)
    const src = source.params[srcName]
    const data = src.dataSync()
    const sShape = src.shape
    const n1 = info.axes.map((r, k) => axisSize(source.spec, r, sShape[k]))
    const vals = new Float32Array(info.shape.reduce((a, b) => a * b, 1))
    const idx = (i: number, k: number) => (mode === 'dup' ? i % n1[k] : i < n1[k] ? i : -1)
    if (info.shape.length === 1) {
      for (let i = 0; i < info.shape[0]; i++) {
        const s = idx(i, 0)
        vals[i] = s < 0 ? 0 : data[s]
      }
    } else {
      const [a, b] = info.shape
      for (let i = 0; i < a; i++)
        for (let j = 0; j < b; j++) {
          const si = idx(i, 0)
          const sj = idx(j, 1)
          vals[i * b + j] = si < 0 || sj < 0 ? 0 : data[si * sShape[1]! + sj]
        }
    }
    out[info.name] = vals
  }
  return out
}

const expectMatches = (model: Model, ref: Record<string, Float32Array>) => expectParamsMatch(model, ref, 1e-6)

const source = initModel(small, 7)
afterAll(() => dispose(source))

describe('ligo initialisation reproduces the fixed methods', () => {
  it('duplicate width + stack depth = Net2Net-style copies stacked [0,1,0,1]', async () => {
    const { model } = await ligo.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'stack', newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (i) => i % 2),
    )
    dispose(model)
  })
  it('duplicate width + interpolate depth = copies in order [0,0,1,1]', async () => {
    const { model } = await ligo.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'interpolate', newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (i) => Math.floor(i / 2)),
    )
    dispose(model)
  })
  it('identity init ([I; 0]) zero-pads every grown axis, in both forms', async () => {
    for (const form of ['kronecker', 'block'] as const) {
      const { model } = await ligo.grow(
        source,
        big,
        testContext(1),
        opts({ steps: 0, initNoise: 0, form, widthInit: 'identity', newLayers: 'copy' }),
      )
      expectMatches(
        model,
        reference(source, big, 'pad', (i) => i % 2),
      )
      dispose(model)
    }
  })
  it('depth only: stacking the unchanged-width source, with only depth parameters', async () => {
    const deep = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 2, dFF: 16 })
    const op = createLigo(
      small,
      deep,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0 },
      1,
    )
    expect(Object.keys(op.variables).every((k) => k.startsWith('depth.'))).toBe(true)
    op.dispose()
    const { model } = await ligo.grow(
      source,
      deep,
      testContext(1),
      opts({ steps: 0, initNoise: 0, newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, deep, 'dup', (i) => i % 2),
    )
    dispose(model)
  })
  it('width only: no depth parameters, same layer count', async () => {
    const wide = parseSpec({ ...base, dModel: 16, nLayers: 2, nHeads: 4, dFF: 32 })
    const op = createLigo(
      small,
      wide,
      null,
      { form: 'block', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0.1 },
      1,
    )
    const keys = Object.keys(op.variables)
    expect(keys.some((k) => k.startsWith('depth.'))).toBe(false)
    // block form trains only the new rows C of [I; C]: (16-8)x8 for E, (16-8)x8 per q/k/v, (32-16)x16 per fc1
    expect(op.parameterCount).toBe(8 * 8 + 2 * (3 * 8 * 8 + 16 * 16))
    op.dispose()
  })
})

describe('ligo operator parameters', () => {
  it('kronecker parameter count and materialisation FLOPs match a hand count', () => {
    const op = createLigo(
      small,
      big,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0 },
      1,
    )
    // E 16x8; per source layer (2): B_Q, B_K, B_V 16x8 and B_fc1 32x16; depth: 9 modules minus gate = 8 of 4x2
    expect(op.parameterCount).toBe(128 + 2 * (3 * 128 + 512) + 8 * 8)
    // Width, per source layer: q,k,v [8,8]->[16,16]: W·Bᵀ 2·8·8·16 + E·(.) 2·16·8·16 = 6144 each (+ bias 2·16·8)
    // o same 6144 + bias(residual) 256; fc1 [8,16]->[16,32]: 2·8·16·32 + 2·16·8·32 = 16384, bias 2·32·16 = 1024;
    // fc2 [16,8]->[32,16]: 2·16·8·16 + 2·32·16·16 = 20480, bias 256; norms: 2 x (scale+shift) x 256.
    const perLayerWidth = 3 * (6144 + 256) + 6144 + 256 + 16384 + 1024 + 20480 + 256 + 4 * 256
    // Non-layer: tokens [16,8]->[16,16] 2·16·8·16 = 4096, positions [8,8]->[8,16] 2048, final norm 2x256.
    const width = 2 * perLayerWidth + 4096 + 2048 + 512
    // Depth: 2·L1 FLOPs per target-layer entry; per target layer 4·(16·16+16) + 2·16·32 + 32 + 16 + 4·16 entries.
    const perTarget = 4 * (256 + 16) + 512 + 32 + 512 + 16 + 4 * 16
    expect(op.materialiseFlops).toBe(width + 4 * perTarget * 2 * 2)
    op.dispose()
  })

  it('gradients reach every operator parameter and match finite differences', () => {
    const op = createLigo(
      small,
      big,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0.2 },
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

describe('ligo fitting', () => {
  describeLearnedFitting(ligo, {
    small,
    big,
    options: opts({ steps: 40, learningRate: 1e-2 }),
    heldOut: 4,
    margin: 0.05,
  })
})

describe('ligo across families and architectures', () => {
  describeLearnedFamilies(
    ligo,
    { dModel: 8, nHeads: 2, dFF: 16 },
    { dModel: 12, nHeads: 3, dFF: 24 },
    opts({}),
  )
})

describe('ligo refusals', () => {
  it('refuses mixture-of-experts, GQA, vocabulary growth and shrinking', () => {
    const moe = parseSpec({
      ...base,
      dModel: 16,
      nLayers: 4,
      nHeads: 4,
      dFF: 32,
      moe: { experts: 2, layers: [1] },
    })
    expect(() => ligo.check(small, moe, opts({}))).toThrow(/mixture-of-experts/)
    const gqa = parseSpec({ ...base, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32, nKVHeads: 2 })
    const gqaSmall = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16, nKVHeads: 1 })
    expect(() => ligo.check(gqaSmall, { ...gqa, nKVHeads: 1 }, opts({}))).toThrow(GrowthError)
    expect(() => ligo.check(small, { ...big, vocabSize: 32 }, opts({}))).toThrow(/vocabulary/)
    expect(() => ligo.check(big, small, opts({}))).toThrow(/never shrinks/)
  })
  it('validates options by name', () => {
    expect(ligoOptions.safeParse({ form: 'tucker' }).success).toBe(false)
    expect(ligoOptions.safeParse({ steps: -1 }).success).toBe(false)
  })
})
