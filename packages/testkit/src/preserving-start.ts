import { type GrowthOperator, parseSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { expect, it } from 'vitest'
import { fitFromPreservingStart, perturbedModel, startLogitDiff } from './learned.js'

/** One exactness case: the source's architecture fields, the growth, and the method's options. */
export type PreservingCase<O> = [
  label: string,
  arch: Record<string, unknown>,
  grow: Record<string, unknown>,
  options: O,
]

/**
 * Registers the tests of a learned method's function-preserving start (its initialisation,
 * fitting step 0): for each case, a perturbed 2-layer d8 source grown as the case says gives the
 * source's logits (max |Δ| < 1e-4) with a negligible LayerNorm ε (the residual copies carry
 * x/√k, so ε acts as k·ε on them); and with the default ε, width and depth ×2 stays within
 * 2e-3 (but is not exact); post-norm depth growth is not exact; and fitting 30 steps from the
 * start ends at or below the Markov-pretrained source's held-out loss. No leaked tensors.
 */
export function describePreservingStart<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  options: (o: Partial<O>) => O,
  cases: PreservingCase<Partial<O>>[],
): void {
  const base = { family: 'decoder', vocabSize: 16, maxSeqLen: 8 } as const
  const exact = { normEps: 1e-10 }
  for (const [label, arch, grow, o] of cases)
    it(`${label}: logits equal the source's at fitting step 0`, async () => {
      const small = parseSpec({ ...base, ...exact, ...arch, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
      const target = parseSpec({ ...base, ...exact, ...arch, ...grow })
      const source = perturbedModel(small, 3)
      const before = tf.memory().numTensors
      expect(await startLogitDiff(op, source, target, options(o))).toBeLessThan(1e-4)
      expect(tf.memory().numTensors).toBe(before)
      tf.dispose(Object.values(source.params))
    })

  it('with the default LayerNorm ε the start is within ε·k/var of the source', async () => {
    const small = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
    const source = perturbedModel(small, 3)
    const big = { ...small, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 }
    const diff = await startLogitDiff(op, source, big, options({}))
    expect(diff).toBeGreaterThan(1e-6)
    expect(diff).toBeLessThan(2e-3)
    tf.dispose(Object.values(source.params))
  })

  it('is not exact where a layer map cannot express it: post-norm depth', async () => {
    const post = parseSpec({
      ...base,
      ...exact,
      normPlacement: 'post',
      dModel: 8,
      nLayers: 2,
      nHeads: 2,
      dFF: 16,
    })
    const source = perturbedModel(post, 5)
    expect(await startLogitDiff(op, source, { ...post, nLayers: 3 }, options({}))).toBeGreaterThan(1e-3)
    tf.dispose(Object.values(source.params))
  })

  it('fitting from the preserving start ends at or below the source held-out loss', async () => {
    const small = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
    const big = parseSpec({ ...base, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 })
    const before = tf.memory().numTensors
    const r = await fitFromPreservingStart(
      op,
      small,
      big,
      options({ steps: 30, learningRate: 1e-3 } as unknown as Partial<O>),
    )
    expect(r.fitted).toBeLessThanOrEqual(r.source)
    expect(tf.memory().numTensors).toBe(before)
  })
}
