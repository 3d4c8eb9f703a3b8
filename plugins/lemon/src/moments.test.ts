import { disposeModel, initModel, parseSpec, quietGrowthContext, type TransformerSpec } from '@sprout/core'
import { compareMappedMoments, syntheticBatches } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import lemon, { lemonMomentMap, lemonOptions } from './index.js'

const close = (c: { maxAbsDiff: number; maxAbs: number }) => c.maxAbsDiff <= 2e-4 * c.maxAbs + 1e-12
const base = { vocabSize: 32, maxSeqLen: 8, nLayers: 2, dModel: 16, nHeads: 2, headDim: 8, dFF: 32 }

async function compare(source: TransformerSpec, target: TransformerSpec, noiseStd = 0) {
  const model = initModel(source, 4)
  const result = await lemon.grow(model, target, quietGrowthContext(2), lemonOptions.parse({ noiseStd }))
  const batch = syntheticBatches(source, 6).next()
  try {
    return compareMappedMoments(model, result, batch)
  } finally {
    tf.dispose(Object.values(batch))
    disposeModel(result.model)
    disposeModel(model)
  }
}

describe('lemon moment map', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    [
      'decoder width+heads+ffn+depth (tied)',
      { family: 'decoder', ...base },
      { dModel: 32, nHeads: 4, dFF: 96, nLayers: 3 },
    ],
    [
      'decoder untied, swiglu, rmsnorm',
      { family: 'decoder', ...base, tieEmbeddings: false, activation: 'swiglu', norm: 'rmsnorm' },
      { dModel: 48, nHeads: 3, dFF: 64 },
    ],
    [
      'decoder grouped-query',
      { family: 'decoder', ...base, nHeads: 4, nKVHeads: 2, headDim: 4 },
      { dModel: 32, nHeads: 8, nKVHeads: 4 },
    ],
    [
      'encoder post-norm, masked-LM head',
      { family: 'encoder', ...base, normPlacement: 'post', mlmHead: true },
      { dModel: 32, nHeads: 4, dFF: 64 },
    ],
    [
      'vit',
      { family: 'vit', ...base, maxSeqLen: undefined, image: { size: 8, patch: 4, channels: 1, classes: 4 } },
      { dModel: 32, nHeads: 4, nLayers: 4 },
    ],
  ]
  for (const [label, s, grow] of cases)
    it(`grown gradients' moments equal the mapped source moments: ${label}`, async () => {
      const before = tf.memory().numTensors
      const source = parseSpec(s)
      const cmp = await compare(source, parseSpec({ ...s, ...grow }))
      // New layers' zero-initialised output projections get zero moments, though their gradient is not zero.
      const fresh = (n: string) => /^layers\.\d+\.(attn\.o|mlp\.fc2)\./.test(n)
      const layers = lemonMomentMap(source, parseSpec({ ...s, ...grow }))!
      const checked = cmp.filter((c) => !(fresh(c.name) && layers[c.name].from === undefined))
      expect(
        checked.filter((c) => !close(c)).map((c) => `${c.slot}.${c.name} ${c.maxAbsDiff} of ${c.maxAbs}`),
      ).toEqual([])
      expect(checked.filter((c) => c.maxAbs > 0).length).toBeGreaterThan(20)
      expect(tf.memory().numTensors).toBe(before)
    })

  it('a plain copy (no 1/k, 1/n factors) would fail the same check', async () => {
    const source = parseSpec({ family: 'decoder', ...base })
    const target = parseSpec({ family: 'decoder', ...base, dModel: 32, dFF: 64 })
    const model = initModel(source, 4)
    const result = await lemon.grow(model, target, quietGrowthContext(2), lemonOptions.parse({ noiseStd: 0 }))
    for (const rule of Object.values(result.moments!)) delete rule.scale
    const batch = syntheticBatches(source, 6).next()
    const cmp = compareMappedMoments(model, result, batch)
    expect(
      cmp.find((c) => c.name === 'layers.0.mlp.fc1.weight' && c.slot === 'm')!.maxAbsDiff,
    ).toBeGreaterThan(1e-3 * cmp.find((c) => c.name === 'layers.0.mlp.fc1.weight')!.maxAbs)
    expect(cmp.filter((c) => !close(c)).length).toBeGreaterThan(10)
    tf.dispose(Object.values(batch))
    disposeModel(result.model)
    disposeModel(model)
  })

  it('with zero-sum noise the error of the map grows in proportion to noiseStd; an indivisible width resets', async () => {
    const source = parseSpec({ family: 'decoder', ...base })
    const target = parseSpec({ family: 'decoder', ...base, dModel: 32, dFF: 64 })
    const error = async (noise: number) => {
      const cmp = await compare(source, target, noise)
      return cmp.filter((c) => c.slot === 'm').reduce((s, c) => s + c.maxAbsDiff, 0)
    }
    const small = await error(1e-4)
    const large = await error(1e-3)
    expect(large / small).toBeGreaterThan(5)
    expect(large / small).toBeLessThan(20)
    expect(lemonMomentMap(source, parseSpec({ family: 'decoder', ...base, dModel: 24 }))).toBeNull()
  })
})
