import { type Model, parseSpec } from '@sprout/core'
import {
  describePreservingStart,
  fitContext,
  type PreservingCase,
  perturbedModel,
  startLogitDiff,
} from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import mango, { type MangoOptions, mangoOptions } from './index.js'

const base = { family: 'decoder', vocabSize: 16, maxSeqLen: 8 } as const
// The residual copies carry x/√k, so LayerNorm's ε acts as k·ε on them: the exactness cases
// use a negligible ε to check the algebra; the ε effect is checked separately.
const exact = { normEps: 1e-10 }
const opts = (o: Partial<MangoOptions> = {}): MangoOptions => mangoOptions.parse(o)
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

describe('mango function-preserving start', () => {
  const cases: PreservingCase<Partial<MangoOptions>>[] = [
    [
      'width ×2 and depth ×2 (layernorm, gelu, stack), default rank',
      {},
      { dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 },
      {},
    ],
    [
      'depth by interpolation, uniform rank 3',
      {},
      { dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 },
      { depthInit: 'interpolate', rank: 3 },
    ],
    [
      'rmsnorm, swiglu, no biases',
      { norm: 'rmsnorm', activation: 'swiglu', bias: false },
      { dModel: 16, nLayers: 3, nHeads: 4, dFF: 32 },
      {},
    ],
    [
      'rotary positions, tied embeddings, width ×3',
      { positional: 'rotary', tieEmbeddings: true },
      { dModel: 24, nLayers: 3, nHeads: 6, dFF: 48 },
      {},
    ],
  ]
  describePreservingStart(mango, opts, cases)

  it('is not exact where the ring cannot express it: rank 1', async () => {
    const pre = parseSpec({ ...base, ...exact, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
    const source = perturbedModel(pre, 4)
    const big = parseSpec({ ...pre, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 })
    expect(await startLogitDiff(mango, source, big, opts({ rank: 1 }))).toBeGreaterThan(1e-3)
    dispose(source)
  })

  it('refuses rank 1 with an explicit initNoise 0: the fallback start could not fit', () => {
    const small = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
    const source = perturbedModel(small, 6)
    const big = parseSpec({ ...small, dModel: 16, nHeads: 4, dFF: 32 })
    return expect(mango.grow(source, big, fitContext(1), opts({ rank: 1, initNoise: 0, steps: 0 })))
      .rejects.toThrow(/bond ranks a, b, c ≥ 2/)
      .finally(() => dispose(source))
  })
})
