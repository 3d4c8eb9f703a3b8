import { disposeModel, initModel, parseSpec, quietGrowthContext } from '@sprout/core'
import { compareMappedMoments, syntheticBatches } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import net2net, { type Net2NetOptions, net2netOptions } from './index.js'

const close = (c: { maxAbsDiff: number; maxAbs: number }) => c.maxAbsDiff <= 2e-4 * c.maxAbs + 1e-12
const base = { vocabSize: 32, maxSeqLen: 8, nLayers: 2, dModel: 16, nHeads: 2, headDim: 8, dFF: 32 }

async function compare(
  s: Record<string, unknown>,
  grow: Record<string, unknown>,
  options: Partial<Net2NetOptions>,
) {
  const source = parseSpec(s)
  const model = initModel(source, 7)
  const result = await net2net.grow(
    model,
    parseSpec({ ...s, ...grow }),
    quietGrowthContext(3),
    net2netOptions.parse(options),
  )
  const batch = syntheticBatches(source, 8).next()
  try {
    return { cmp: compareMappedMoments(model, result, batch), moments: result.moments! }
  } finally {
    tf.dispose(Object.values(batch))
    disposeModel(result.model)
    disposeModel(model)
  }
}

describe('net2net moment map', () => {
  for (const [label, s] of [
    ['decoder tied', { family: 'decoder', ...base }],
    ['decoder untied', { family: 'decoder', ...base, tieEmbeddings: false }],
    ['encoder post-norm', { family: 'encoder', ...base, normPlacement: 'post' }],
  ] as const)
    it(`FPI (random unit choice, identity depth): mapped moments equal the grown model's: ${label}`, async () => {
      const before = tf.memory().numTensors
      const depth = s.family === 'encoder' ? {} : { nLayers: 3 }
      const { cmp, moments } = await compare(s, { dModel: 32, nHeads: 3, dFF: 48, ...depth }, {})
      // New identity layers' zero output projections start at zero moments (their gradient is not zero).
      const skip = (n: string) => /^layers\.2\.(attn\.o|mlp\.fc2)\./.test(n) && moments[n].from === undefined
      const checked = cmp.filter((c) => !skip(c.name))
      expect(
        checked.filter((c) => !close(c)).map((c) => `${c.slot}.${c.name} ${c.maxAbsDiff} of ${c.maxAbs}`),
      ).toEqual([])
      expect(checked.filter((c) => c.maxAbs > 0).length).toBeGreaterThan(20)
      expect(tf.memory().numTensors).toBe(before)
    })

  it('AKI: new units start at zero moments', async () => {
    const { moments } = await compare({ family: 'decoder', ...base }, { dFF: 48 }, { init: 'aki' })
    const idx = moments['layers.0.mlp.fc1.weight'].index![1]!
    expect(Array.from(idx).slice(32)).toEqual(new Array(16).fill(-1))
  })
})
