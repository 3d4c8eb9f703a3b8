import { GrowthError, initModel, maxAbsLogitDiff, parseSpec, quietGrowthContext } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import identity from './index.js'

const spec = parseSpec({
  family: 'decoder',
  vocabSize: 32,
  maxSeqLen: 8,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  dFF: 32,
})
const ctx = () => quietGrowthContext()

describe('identity operator', () => {
  it('copies the model exactly and leaks nothing', async () => {
    const source = initModel(spec, 3)
    const before = tf.memory().numTensors
    const { model } = await identity.grow(source, spec, ctx(), {})
    expect(maxAbsLogitDiff(source, model)).toBe(0)
    expect(model.params['layers.0.attn.q.weight']).not.toBe(source.params['layers.0.attn.q.weight'])
    tf.dispose(Object.values(model.params))
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose(Object.values(source.params))
  })
  it('refuses a different target', () => {
    expect(() => identity.check(spec, { ...spec, dModel: 32 }, {})).toThrow(GrowthError)
  })
})
