import {
  applyMask,
  disposeModel,
  initModel,
  type Model,
  maxAbsLogitDiff,
  parseSpec,
  quietGrowthContext,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import { perturbedModel } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import stack, {
  checkStack,
  gstackGrowthTokens,
  layerOrder,
  newLayers,
  requiredFactor,
  type StackOptions,
  stackOptions,
} from './index.js'

const ctx = () => quietGrowthContext()
const opts = (o: Partial<StackOptions> = {}) => stackOptions.parse(o)

const base = { vocabSize: 40, maxSeqLen: 8, dModel: 16, nLayers: 2, nHeads: 2, dFF: 32 }
const families: Record<string, Record<string, unknown>> = {
  decoder: { family: 'decoder', ...base },
  encoder: { family: 'encoder', ...base, mlmHead: true },
  vit: {
    family: 'vit',
    ...base,
    vocabSize: 0,
    maxSeqLen: 5,
    image: { size: 8, patch: 4, channels: 1, classes: 3 },
  },
}

async function grow(
  src: TransformerSpec,
  layers: number,
  o: Partial<StackOptions> = {},
  moeLayers?: number[],
) {
  const source = initModel(src, 7)
  const target = parseSpec({
    ...src,
    nLayers: layers,
    ...(moeLayers ? { moe: { ...src.moe!, layers: moeLayers } } : {}),
  })
  const result = await stack.grow(source, target, ctx(), opts(o))
  return { source, result }
}

function sameTensor(a: tf.Tensor, b: tf.Tensor): boolean {
  return a.shape.join() === b.shape.join() && tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]) === 0
}

describe('layer order', () => {
  it('stacks the whole model or interleaves layers', () => {
    expect(layerOrder(3, 6, 'stack')).toEqual([0, 1, 2, 0, 1, 2])
    expect(layerOrder(2, 8, 'stack')).toEqual([0, 1, 0, 1, 0, 1, 0, 1])
    expect(layerOrder(3, 6, 'interleave')).toEqual([0, 0, 1, 1, 2, 2])
    expect(layerOrder(2, 6, 'masked', 'interleave')).toEqual([0, 0, 0, 1, 1, 1])
    expect(newLayers(2, 6)).toEqual([2, 3, 4, 5])
    expect(newLayers(2, 6, 'interleave')).toEqual([1, 2, 4, 5])
  })

  it("G_stack's growth timing: d tokens from log10 d = 0.88 log10 N + 163.27 / log10 C − 5.74", () => {
    const N = 7e9
    const C = 1.26e22
    // 10^10.3113452136311 = 20480719690.18 tokens, computed with 40-digit decimals (Python's decimal).
    expect(gstackGrowthTokens(N, C) / 20480719690.18).toBeCloseTo(1, 10)
    // More parameters need more base training; more compute moves growth earlier.
    expect(gstackGrowthTokens(2 * N, C)).toBeGreaterThan(gstackGrowthTokens(N, C))
    expect(gstackGrowthTokens(N, 10 * C)).toBeLessThan(gstackGrowthTokens(N, C))
    expect(() => gstackGrowthTokens(0, C)).toThrow(/targetParams must be > 0/)
  })

  it('each mode requires its growth factor', () => {
    expect(requiredFactor(opts({ mode: 'stackbert' }))).toBe(2)
    expect(requiredFactor(opts({ mode: 'gstack' }))).toBe(4)
    expect(requiredFactor(opts({ mode: 'gstack', factor: 3 }))).toBe(3)
    expect(requiredFactor(opts({ mode: 'stack' }))).toBeUndefined()
    expect(requiredFactor(opts({ mode: 'interleave', factor: 2 }))).toBe(2)
  })
})

/** Perturbs every parameter so zero-initialised biases and unit norms cannot hide a wrong copy. */
const randomised = (spec: TransformerSpec, seed: number): Model => perturbedModel(spec, seed, 0.1)

describe('masked stacking is lossless at mask 0 across a matrix of random pre-norm specs', () => {
  const r = new SeededRandom(77)
  const kinds = ['decoder', 'encoder', 'vit'] as const
  for (let i = 0; i < 12; i++) {
    const family = kinds[i % 3]
    const norm = r.uniform() < 0.5 ? 'layernorm' : 'rmsnorm'
    const activation = (['gelu', 'swiglu', 'relu', 'gelu_tanh'] as const)[r.int(4)]
    const bias = r.uniform() < 0.5
    const tieEmbeddings = family !== 'vit' && r.uniform() < 0.5
    const rotary = family === 'decoder' && r.uniform() < 0.5
    const g = 2 + r.int(2)
    const raw = {
      ...families[family],
      norm,
      activation,
      bias,
      dModel: 12,
      nHeads: 3,
      dFF: 20 + r.int(5),
      ...(family === 'vit' ? {} : { tieEmbeddings }),
      ...(family === 'encoder' ? { mlmHead: tieEmbeddings } : {}),
      ...(rotary ? { positional: 'rotary' } : {}),
    }
    it(`${family} ${norm} ${activation} bias=${bias} tied=${tieEmbeddings} mlm=${family === 'encoder' && tieEmbeddings} rotary=${rotary} ×${g} ${i % 2 === 1 ? 'interleaved' : 'stacked'}`, async () => {
      const before = tf.memory().numTensors
      const src = parseSpec(raw)
      const source = randomised(src, 10 + i)
      const target = parseSpec({ ...raw, nLayers: 2 * g })
      const interleaved = i % 2 === 1
      const masked = await stack.grow(
        source,
        target,
        ctx(),
        opts({ mode: 'masked', maskRampSteps: 4, maskedOrder: interleaved ? 'interleave' : 'stack' }),
      )
      const plain = await stack.grow(
        source,
        target,
        ctx(),
        opts(interleaved ? { mode: 'interleave' } : { mode: 'gstack', factor: g }),
      )
      const atZero = applyMask(masked.model, masked.mask, 0)
      expect(maxAbsLogitDiff(source, atZero)).toBeLessThan(1e-4)
      // Plain stacking changes the function: the mask is doing the work, not a degenerate model.
      expect(maxAbsLogitDiff(source, plain.model)).toBeGreaterThan(1e-3)
      expect(maxAbsLogitDiff(plain.model, applyMask(masked.model, masked.mask, 4))).toBe(0)
      for (const n of masked.mask!.params) atZero.params[n].dispose()
      for (const m of [source, masked.model, plain.model]) disposeModel(m)
      expect(tf.memory().numTensors).toBe(before)
    })
  }
})

describe('stack', () => {
  for (const [family, raw] of Object.entries(families)) {
    it(`${family}: every target layer is an exact copy of its source layer; other parameters copied`, async () => {
      const before = tf.memory().numTensors
      const src = parseSpec(raw)
      for (const mode of ['stack', 'interleave'] as const) {
        const { source, result } = await grow(src, 4, { mode })
        const order = layerOrder(2, 4, mode)
        for (const [name, t] of Object.entries(result.model.params)) {
          const m = /^layers\.(\d+)\.(.*)$/.exec(name)
          const from = m ? `layers.${order[Number(m[1])]}.${m[2]}` : name
          expect(sameTensor(t, source.params[from]), `${mode} ${name} <- ${from}`).toBe(true)
        }
        expect(result.model.spec.nLayers).toBe(4)
        expect(result.report.functionPreserving).toBe(false)
        expect(result.schedule?.freshOptimizer).toBe(true)
        disposeModel(source)
        disposeModel(result.model)
      }
      expect(tf.memory().numTensors).toBe(before)
    })

    it(`${family}: masked stacking is lossless at mask 0 and plain stacking at mask 1`, async () => {
      const before = tf.memory().numTensors
      const src = parseSpec(raw)
      const { source, result } = await grow(src, 6, { mode: 'masked', maskRampSteps: 10 })
      const mask = result.mask!
      expect(mask.rampSteps).toBe(10)
      expect(mask.params).toContain('layers.5.attn.o.weight')
      expect(mask.params).toContain('layers.2.mlp.fc2.bias')
      expect(mask.params.some((n) => n.startsWith('layers.1.'))).toBe(false)
      expect(result.report.details.maskedLayers).toEqual([2, 3, 4, 5])
      const atZero = applyMask(result.model, mask, 0)
      expect(maxAbsLogitDiff(source, atZero)).toBeLessThan(1e-5)
      const halfway = applyMask(result.model, mask, 5)
      const half = tf.mul(result.model.params['layers.4.attn.o.weight'], 0.5)
      expect(sameTensor(halfway.params['layers.4.attn.o.weight'], half)).toBe(true)
      half.dispose()
      expect(applyMask(result.model, mask, 10)).toBe(result.model)
      const plain = await grow(src, 6)
      expect(maxAbsLogitDiff(plain.result.model, result.model)).toBe(0)
      for (const view of [atZero, halfway]) for (const n of mask.params) view.params[n].dispose()
      for (const m of [source, result.model, plain.source, plain.result.model]) disposeModel(m)
      expect(tf.memory().numTensors).toBe(before)
    })
  }

  it('copies mixture-of-experts layers when the target places them consistently', async () => {
    const src = parseSpec({ ...families.decoder, moe: { experts: 2, topK: 1, layers: [1] } })
    const { source, result } = await grow(src, 4, { mode: 'masked' }, [1, 3])
    expect(result.mask!.params).toContain('layers.3.mlp.experts.1.fc2.weight')
    const atZero = applyMask(result.model, result.mask, 0)
    expect(maxAbsLogitDiff(source, atZero)).toBeLessThan(1e-5)
    disposeModel(source)
    disposeModel(result.model)
    expect(() =>
      checkStack(src, parseSpec({ ...src, nLayers: 4, moe: { ...src.moe!, layers: [1] } }), opts()),
    ).toThrow(
      /target layer 3 copies source layer 1, but only one of them is a mixture-of-experts layer; set the target's moe.layers to \[1, 3\]/,
    )
  })

  it('refuses what stacking cannot do, naming the problem', () => {
    const src = parseSpec(families.decoder)
    const t = (o: Record<string, unknown>) => parseSpec({ ...families.decoder, nLayers: 4, ...o })
    expect(() => checkStack(src, t({ dModel: 32, nHeads: 4 }), opts())).toThrow(
      /depth only, but dModel differs \(16 → 32\).*lemon/,
    )
    expect(() => checkStack(src, t({ nLayers: 3 }), opts())).toThrow(
      /target nLayers 3 must be a multiple \(≥ 2×\) of the source's 2/,
    )
    expect(() => checkStack(src, t({ nLayers: 2 }), opts())).toThrow(/multiple/)
    expect(() => checkStack(src, t({}), opts({ factor: 4 }))).toThrow(
      /option factor 4 does not match the target: 2 → 4 layers is a factor of 2/,
    )
    const post = parseSpec({ ...families.decoder, normPlacement: 'post' })
    expect(() => checkStack(post, parseSpec({ ...post, nLayers: 4 }), opts({ mode: 'masked' }))).toThrow(
      /needs pre-norm/,
    )
    expect(() => checkStack(src, t({ nLayers: 6 }), opts({ mode: 'stackbert' }))).toThrow(
      /mode "stackbert" grows depth 2× \(2 → 4 layers\), but the target has 6; set the target's nLayers to 4, or use mode "stack"/,
    )
    expect(() => checkStack(src, t({}), opts({ mode: 'gstack' }))).toThrow(
      /mode "gstack" grows depth 4× \(2 → 8 layers\), but the target has 4; .*pass --option factor=2/,
    )
    expect(() => checkStack(src, t({ nLayers: 8 }), opts({ mode: 'gstack' }))).not.toThrow()
    expect(() => checkStack(src, t({}), opts({ mode: 'stackbert', factor: 4 }))).toThrow(
      /always doubles depth/,
    )
    expect(() => stackOptions.parse({ mode: 'zigzag' })).toThrow()
  })

  it('is deterministic', async () => {
    const src = parseSpec(families.decoder)
    const a = await grow(src, 4)
    const b = await grow(src, 4)
    expect(maxAbsLogitDiff(a.result.model as Model, b.result.model as Model)).toBe(0)
    for (const m of [a.source, a.result.model, b.source, b.result.model]) disposeModel(m)
  })
})
