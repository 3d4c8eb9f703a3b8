import { type Model, parseSpec, SeededRandom } from '@sprout/core'
import { describePreservingStart, type PreservingCase, perturbedModel, startLogitDiff } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import ligo, { type LigoOptions, leftNullVectors, ligoOptions } from './index.js'

const base = { family: 'decoder', vocabSize: 16, maxSeqLen: 8 } as const
const opts = (o: Partial<LigoOptions> = {}): LigoOptions => ligoOptions.parse(o)
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

// The residual copies carry x/√k, so LayerNorm's ε acts as k·ε on them: exact up to ε. The
// exactness cases use a negligible ε to check the algebra; the ε effect is checked separately.
const exact = { normEps: 1e-10 }

describe('ligo function-preserving start', () => {
  const cases: PreservingCase<Partial<LigoOptions>>[] = [
    [
      'width ×2 and depth ×2 (layernorm, gelu, stack)',
      {},
      { dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 },
      {},
    ],
    [
      'depth by interpolation',
      {},
      { dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 },
      { depthInit: 'interpolate' },
    ],
    [
      'rmsnorm, swiglu, no biases',
      { norm: 'rmsnorm', activation: 'swiglu', bias: false },
      { dModel: 16, nLayers: 3, nHeads: 4, dFF: 32 },
      {},
    ],
    ['wider heads (headDim 4 → 8)', {}, { dModel: 16, nLayers: 2, nHeads: 2, headDim: 8, dFF: 32 }, {}],
    [
      'rotary positions, tied embeddings',
      { positional: 'rotary', tieEmbeddings: true },
      { dModel: 24, nLayers: 3, nHeads: 6, dFF: 48 },
      {},
    ],
    [
      'block form, dModel kept',
      {},
      { dModel: 8, nLayers: 4, nHeads: 4, headDim: 4, dFF: 32 },
      { form: 'block' },
    ],
  ]
  describePreservingStart(ligo, opts, cases)

  it('is not exact where the form cannot express it: non-multiple width', async () => {
    const pre = parseSpec({ ...base, ...exact, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
    const source = perturbedModel(pre, 5)
    const odd = parseSpec({ ...base, ...exact, dModel: 12, nLayers: 2, nHeads: 3, dFF: 16 })
    expect(await startLogitDiff(ligo, source, odd, opts())).toBeGreaterThan(1e-3)
    dispose(source)
  })

  it('new FFN units lie in the left null space of fc2 (b·W = 0), unit length', () => {
    const rng = new SeededRandom(1)
    const w = Float32Array.from({ length: 6 * 2 }, () => rng.normal())
    const b = leftNullVectors(w, 6, 2, 3, new SeededRandom(2))
    for (let c = 0; c < 3; c++) {
      let norm = 0
      for (let i = 0; i < 6; i++) norm += b[c * 6 + i] ** 2
      expect(norm).toBeCloseTo(1, 6)
      for (let j = 0; j < 2; j++) {
        let dot = 0
        for (let i = 0; i < 6; i++) dot += b[c * 6 + i] * w[i * 2 + j]
        expect(Math.abs(dot)).toBeLessThan(1e-5)
      }
    }
    // No null space: a square full-rank matrix gives zero rows.
    const square = Float32Array.from({ length: 9 }, (_, i) => (i % 4 === 0 ? 1 : 0))
    expect(Array.from(leftNullVectors(square, 3, 3, 1, rng))).toEqual([0, 0, 0])
  })
})
