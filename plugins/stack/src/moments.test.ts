import { disposeModel, initModel, type Model, parseSpec, quietGrowthContext } from '@sprout/core'
import { compareMappedMoments, syntheticBatches } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import stack, { type StackOptions, stackOptions } from './index.js'

const source = parseSpec({
  family: 'decoder',
  vocabSize: 32,
  maxSeqLen: 8,
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  headDim: 8,
  dFF: 32,
})
const target = { ...source, nLayers: 4 }
const close = (c: { maxAbsDiff: number; maxAbs: number }) => c.maxAbsDiff <= 1e-4 * c.maxAbs + 1e-12

/** A source whose residual branches write nothing: then every layer (and each copy) sees the same stream. */
function silentBranches(model: Model): Model {
  const params = { ...model.params }
  for (const n of Object.keys(params))
    if (/\.(attn\.o|fc2)\.(weight|bias)$/.test(n)) {
      const z = tf.zerosLike(params[n])
      params[n].dispose()
      params[n] = z
    }
  return { spec: model.spec, params }
}

async function check(model: Model, options: Partial<StackOptions>) {
  const result = await stack.grow(model, target, quietGrowthContext(3), stackOptions.parse(options))
  const batch = syntheticBatches(source, 5).next()
  try {
    return { cmp: compareMappedMoments(model, result, batch), result }
  } finally {
    tf.dispose(Object.values(batch))
    disposeModel(result.model)
  }
}

describe('stack moment map', () => {
  it('copied layers get their source layer moments: exact when the source branches are silent (stack, interleave)', async () => {
    const before = tf.memory().numTensors
    for (const mode of ['stack', 'interleave'] as const) {
      const model = silentBranches(initModel(source, 1))
      const { cmp } = await check(model, { mode })
      expect(cmp.filter((c) => !close(c)).map((c) => `${mode} ${c.slot}.${c.name}`)).toEqual([])
      // Not vacuous: output projections, embeddings and norms carry gradient.
      expect(cmp.filter((c) => c.maxAbs > 0).length).toBeGreaterThan(20)
      disposeModel(model)
    }
    expect(tf.memory().numTensors).toBe(before)
  })

  it('masked mode: exact on any source (kept layers copy, masked layers start at zero)', async () => {
    const model = initModel(source, 2)
    const { cmp } = await check(model, { mode: 'masked' })
    expect(cmp.filter((c) => !close(c)).map((c) => `${c.slot}.${c.name}`)).toEqual([])
    expect(cmp.filter((c) => c.name.startsWith('layers.3.') && c.maxAbs === 0).length).toBeGreaterThan(0)
    expect(cmp.filter((c) => c.name.startsWith('layers.1.') && c.maxAbs > 0).length).toBeGreaterThan(0)
    disposeModel(model)
  })

  it('plain stacking of a trained-like source is only approximately a copy (why it is not an identity)', async () => {
    const model = initModel(source, 2)
    const { cmp } = await check(model, { mode: 'stack' })
    expect(cmp.some((c) => !close(c))).toBe(true)
    disposeModel(model)
  })
})
