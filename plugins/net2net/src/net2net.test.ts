import {
  disposeModel,
  maxAbsLogitDiff,
  paramTable,
  parseSpec,
  quietGrowthContext,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import { perturbedModel } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import net2net, {
  checkNet2Net,
  type Net2NetOptions,
  net2netOptions,
  replicaCounts,
  unitMap,
} from './index.js'

const ctx = quietGrowthContext
const opts = (o: Partial<Net2NetOptions> = {}) => net2netOptions.parse(o)

/** Perturbs every parameter so norms, biases and zero inits are not trivially symmetric. */
const randomised = (spec: TransformerSpec, seed: number) => perturbedModel(spec, seed, 0.1)

/** Columns of a [D·k, F] weight, reading the first D rows and undoing FPI's 1/k on them. */
function columns(w: tf.Tensor, d: number, k: number): number[][] {
  const rows = w.arraySync() as number[][]
  return Array.from({ length: w.shape[1]! }, (_, j) => rows.slice(0, d).map((row) => row[j] * k))
}

function nearestColumn(col: number[], candidates: number[][]): number {
  return Math.min(...candidates.map((c) => Math.max(...c.map((v, i) => Math.abs(v - col[i])))))
}

describe('unit maps', () => {
  it('keeps the first n units, copies new ones, counts replicas', () => {
    const idx = unitMap(3, 5, 'cyclic', new SeededRandom(1))
    expect(Array.from(idx)).toEqual([0, 1, 2, 0, 1])
    expect(Array.from(replicaCounts(idx, 3))).toEqual([2, 2, 1, 2, 2])
    const rnd = unitMap(4, 9, 'random', new SeededRandom(3))
    expect(Array.from(rnd.slice(0, 4))).toEqual([0, 1, 2, 3])
    expect(Array.from(rnd).every((i) => i >= 0 && i < 4)).toBe(true)
  })
})

describe('net2net FPI is lossless across a matrix of specs', () => {
  const r = new SeededRandom(2024)
  const cases: {
    name: string
    src: Record<string, unknown>
    tgt: Record<string, unknown>
    choice: 'random' | 'cyclic'
  }[] = []
  const families = ['decoder', 'encoder', 'vit'] as const
  for (let i = 0; i < 24; i++) {
    const family = families[i % 3]
    const norm = r.uniform() < 0.5 ? 'layernorm' : 'rmsnorm'
    // Every family meets every activation twice.
    const activation = (['gelu', 'swiglu', 'relu', 'gelu_tanh'] as const)[Math.floor(i / 3) % 4]
    const bias = r.uniform() < 0.5
    const tieEmbeddings = family !== 'vit' && r.uniform() < 0.6
    const mlmHead = family === 'encoder' && tieEmbeddings && r.uniform() < 0.6
    const normPlacement = i % 4 === 3 ? 'post' : 'pre'
    const rotary = family === 'decoder' && r.uniform() < 0.5
    const choice = r.uniform() < 0.5 ? 'random' : 'cyclic'
    const k = 1 + r.int(3)
    const heads = 2
    const base = {
      family,
      norm,
      activation,
      bias,
      normPlacement,
      ...(rotary ? { positional: 'rotary' } : {}),
      ...(family === 'vit'
        ? { vocabSize: 0, maxSeqLen: 5, image: { size: 8, patch: 4, channels: 1, classes: 3 } }
        : { vocabSize: 30, maxSeqLen: 8, tieEmbeddings, ...(family === 'encoder' ? { mlmHead } : {}) }),
    }
    const src = { ...base, dModel: 8, nHeads: heads, headDim: 4, dFF: 12, nLayers: 2 }
    const tgt = {
      ...base,
      dModel: 8 * k,
      nHeads: heads + r.int(3),
      headDim: 4,
      dFF: 12 + r.int(9),
      nLayers: normPlacement === 'post' ? 2 : 2 + r.int(3),
    }
    cases.push({
      name: `${family} ${norm} ${activation} ${normPlacement}-norm bias=${bias} tied=${tieEmbeddings} mlm=${mlmHead} rotary=${rotary} ${choice} D×${k} H${heads}→${tgt.nHeads} F12→${tgt.dFF} L2→${tgt.nLayers}`,
      src,
      tgt,
      choice,
    })
  }
  for (const c of cases)
    it(c.name, async () => {
      const before = tf.memory().numTensors
      const source = randomised(parseSpec(c.src), 5)
      const target = parseSpec(c.tgt)
      const result = await net2net.grow(source, target, ctx(), opts({ choice: c.choice }))
      expect(result.report.functionPreserving).toBe(true)
      for (const info of paramTable(target))
        expect(result.model.params[info.name].shape, info.name).toEqual(info.shape)
      const diff = maxAbsLogitDiff(source, result.model)
      expect(diff).toBeLessThan(1e-4)
      // Lossless is not enough (zero new units would be too): every unit must be a real copy.
      const k = target.dModel / source.spec.dModel
      const grownFc1 = columns(result.model.params['layers.0.mlp.fc1.weight'], source.spec.dModel, k)
      const sourceFc1 = columns(source.params['layers.0.mlp.fc1.weight'], source.spec.dModel, 1)
      for (const col of grownFc1) expect(nearestColumn(col, sourceFc1)).toBeLessThan(1e-6)
      disposeModel(source)
      disposeModel(result.model)
      expect(tf.memory().numTensors).toBe(before)
    })
})

describe('net2net options and refusals', () => {
  const src = parseSpec({
    family: 'decoder',
    vocabSize: 30,
    maxSeqLen: 8,
    dModel: 8,
    nHeads: 2,
    dFF: 16,
    nLayers: 2,
  })
  const tgt = parseSpec({ ...src, dModel: 16, nHeads: 4, headDim: 4, dFF: 32, nLayers: 4 })

  it('AKI and stacked depth are not function preserving, and say so', async () => {
    for (const o of [{ init: 'aki' }, { depth: 'stack' }] as const) {
      const source = randomised(src, 1)
      const result = await net2net.grow(source, tgt, ctx(), opts(o))
      expect(result.report.functionPreserving).toBe(false)
      expect(maxAbsLogitDiff(source, result.model)).toBeGreaterThan(1e-4)
      disposeModel(source)
      disposeModel(result.model)
    }
  })

  it('AKI takes the new FFN units of layer 0 from layer 1', async () => {
    const source = randomised(src, 2)
    const result = await net2net.grow(source, tgt, ctx(), opts({ init: 'aki' }))
    const grown = columns(result.model.params['layers.0.mlp.fc1.weight'], 8, 2)
    const own = columns(source.params['layers.0.mlp.fc1.weight'], 8, 1)
    const above = columns(source.params['layers.1.mlp.fc1.weight'], 8, 1)
    for (const col of grown.slice(0, 16)) expect(nearestColumn(col, own)).toBeLessThan(1e-6)
    for (const col of grown.slice(16)) {
      expect(nearestColumn(col, above)).toBeLessThan(1e-6)
      expect(nearestColumn(col, own)).toBeGreaterThan(1e-3)
    }
    expect(String(result.report.details.note)).toMatch(/AKI.*not function preserving/)
    disposeModel(source)
    disposeModel(result.model)
  })

  it('widens mixture-of-experts layers losslessly (router logits unchanged, experts widened alike)', async () => {
    const before = tf.memory().numTensors
    const moeSrc = parseSpec({ ...src, moe: { experts: 2, topK: 1, layers: [1] } })
    const moeTgt = parseSpec({ ...tgt, moe: { experts: 2, topK: 1, layers: [1, 3] } })
    const source = randomised(moeSrc, 3)
    const result = await net2net.grow(source, moeTgt, ctx(), opts())
    expect(maxAbsLogitDiff(source, result.model)).toBeLessThan(1e-4)
    const aki = await net2net.grow(source, moeTgt, ctx(), opts({ init: 'aki' }))
    expect(aki.report.functionPreserving).toBe(false)
    for (const m of [source, result.model, aki.model]) disposeModel(m)
    expect(tf.memory().numTensors).toBe(before)
    expect(() =>
      checkNet2Net(moeSrc, parseSpec({ ...moeTgt, moe: { experts: 2, topK: 1, layers: [1] } }), opts()),
    ).toThrow(/target layer 3 copies source layer 1, but only one of them is a mixture-of-experts layer/)
  })

  it('symmetry noise makes replicas differ while keeping FPI lossless in every family', async () => {
    const before = tf.memory().numTensors
    const specs = [
      src,
      parseSpec({
        ...src,
        family: 'encoder',
        mlmHead: true,
        tieEmbeddings: true,
        activation: 'swiglu',
        norm: 'rmsnorm',
      }),
      parseSpec({
        ...src,
        family: 'vit',
        vocabSize: 0,
        maxSeqLen: 5,
        image: { size: 8, patch: 4, channels: 1, classes: 3 },
        tieEmbeddings: false,
        normPlacement: 'post',
      }),
    ]
    for (const s of specs) {
      const t = parseSpec({
        ...s,
        dModel: 16,
        nHeads: 4,
        headDim: 4,
        dFF: 32,
        nLayers: s.normPlacement === 'post' ? 2 : 3,
      })
      const source = randomised(s, 4)
      const noisy = await net2net.grow(source, t, ctx(), opts({ symmetryNoise: 0.1, choice: 'cyclic' }))
      expect(noisy.report.functionPreserving).toBe(true)
      expect(maxAbsLogitDiff(source, noisy.model)).toBeLessThan(1e-4)
      // cyclic: residual channel 8 copies 0, FFN unit 16 copies 0. The replicas' rows differ, but sum to the source row.
      const fc1 = noisy.model.params['layers.0.mlp.fc1.weight'].arraySync() as number[][]
      const fc2 = noisy.model.params['layers.0.mlp.fc2.weight'].arraySync() as number[][]
      const srcFc1 = source.params['layers.0.mlp.fc1.weight'].arraySync() as number[][]
      const srcFc2 = source.params['layers.0.mlp.fc2.weight'].arraySync() as number[][]
      const gap = (x: number[], y: number[]) => Math.max(...x.map((v, j) => Math.abs(v - y[j])))
      expect(gap(fc1[0], fc1[8])).toBeGreaterThan(1e-3)
      expect(gap(fc2[0], fc2[16])).toBeGreaterThan(1e-3)
      expect(
        gap(
          fc1[0].map((v, j) => v + fc1[8][j]),
          srcFc1[0].concat(srcFc1[0]),
        ),
      ).toBeLessThan(1e-6)
      expect(
        gap(
          fc2[0].map((v, j) => v + fc2[16][j]),
          srcFc2[0].concat(srcFc2[0]),
        ),
      ).toBeLessThan(1e-6)
      const again = await net2net.grow(source, t, ctx(), opts({ symmetryNoise: 0.1, choice: 'cyclic' }))
      expect(maxAbsLogitDiff(noisy.model, again.model)).toBe(0)
      for (const m of [source, noisy.model, again.model]) disposeModel(m)
    }
    expect(tf.memory().numTensors).toBe(before)
    expect(() => net2netOptions.parse({ symmetryNoise: -1 })).toThrow()
  })

  it('is deterministic under a seed; another seed picks other units', async () => {
    const source = randomised(src, 1)
    const a = await net2net.grow(source, tgt, ctx(1), opts())
    const b = await net2net.grow(source, tgt, ctx(1), opts())
    const c = await net2net.grow(source, { ...tgt, dFF: 40 }, ctx(2), opts())
    expect(maxAbsLogitDiff(a.model, b.model)).toBe(0)
    expect(a.report.details.headMap).toEqual(b.report.details.headMap)
    for (const m of [source, a.model, b.model, c.model]) disposeModel(m)
  })

  it('refuses non-integer width factors, shrinking, post-norm identity depth and GQA', () => {
    expect(() => checkNet2Net(src, parseSpec({ ...src, dModel: 12, nHeads: 3, headDim: 4 }), opts())).toThrow(
      /dModel must grow by a whole factor \(8 → 12 is ×1.50\); use lemon for any ratio/,
    )
    expect(() => checkNet2Net(tgt, src, opts())).toThrow(/only grows/)
    const post = parseSpec({ ...src, normPlacement: 'post' })
    expect(() => checkNet2Net(post, parseSpec({ ...post, nLayers: 4 }), opts())).toThrow(
      /depth "identity" needs pre-norm/,
    )
    expect(() =>
      checkNet2Net(post, parseSpec({ ...post, nLayers: 4 }), opts({ depth: 'stack' })),
    ).not.toThrow()
    const gqa = parseSpec({ ...src, nHeads: 4, headDim: 2, nKVHeads: 2 })
    expect(() => checkNet2Net(gqa, parseSpec({ ...gqa, dModel: 16 }), opts())).toThrow(
      /grouped-query attention/,
    )
    expect(() => checkNet2Net(src, parseSpec({ ...tgt, headDim: 8, nHeads: 2 }), opts())).toThrow(
      /net2net keeps headDim/,
    )
    expect(() => net2netOptions.parse({ init: 'magic' })).toThrow()
  })
})
