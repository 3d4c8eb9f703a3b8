import { disposeModel, initModel, parseSpec, quietGrowthContext } from '@sprout/core'
import { compareMappedMoments, lossGradients, syntheticBatches } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import upcycle, { upcycleOptions } from './index.js'

describe('upcycle moment map', () => {
  it('outside the experts the mapped moments equal the upcycled model own; routers start at zero; expert gradients sum to the dense one', async () => {
    const before = tf.memory().numTensors
    const s = {
      family: 'decoder',
      vocabSize: 32,
      maxSeqLen: 8,
      nLayers: 2,
      dModel: 16,
      nHeads: 2,
      headDim: 8,
      dFF: 32,
    }
    const source = parseSpec(s)
    const target = parseSpec({
      ...s,
      moe: { experts: 4, topK: 2, layers: [1], capacityFactor: 8, auxLossWeight: 0, zLossWeight: 0 },
    })
    const model = initModel(source, 3)
    const options = upcycleOptions.parse({ layers: [1], experts: 4, topK: 2 })
    const result = await upcycle.grow(model, target, quietGrowthContext(1), options)
    const batch = syntheticBatches(source, 2).next()
    const cmp = compareMappedMoments(model, result, batch)
    const expert = (n: string) => /\.experts\.\d+\./.test(n)
    // The router's true gradient is zero (the renormalised gates of identical experts sum to 1
    // whatever the router says): float error of ~1e-12 remains, which its zero moments match.
    const bad = cmp.filter((c) => !expert(c.name) && !(c.maxAbsDiff <= 2e-4 * c.maxAbs + 1e-10))
    expect(bad.map((c) => `${c.slot}.${c.name} ${c.maxAbsDiff} of ${c.maxAbs}`)).toEqual([])
    expect(result.moments!['layers.1.mlp.router.weight']).toEqual({})
    expect(result.moments!['layers.1.mlp.experts.3.fc1.weight'].from).toBe('layers.1.mlp.fc1.weight')
    // Why the experts copy (the paper's choice) rather than match: each gets the gated share of the dense gradient.
    const dense = lossGradients(model, batch)
    const grown = lossGradients(result.model, batch)
    const sum = tf.addN([0, 1, 2, 3].map((e) => grown[`layers.1.mlp.experts.${e}.fc1.weight`]))
    const [diff, scale] = tf.tidy(() => [
      tf.max(tf.abs(tf.sub(sum, dense['layers.1.mlp.fc1.weight']))).dataSync()[0],
      tf.max(tf.abs(sum)).dataSync()[0],
    ])
    expect(diff).toBeLessThan(1e-4 * scale + 1e-9)
    tf.dispose([sum, ...Object.values(dense), ...Object.values(grown), ...Object.values(batch)])
    disposeModel(result.model)
    disposeModel(model)
    expect(tf.memory().numTensors).toBe(before)
  })
})
