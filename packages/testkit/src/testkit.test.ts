import { defineOperator, GrowthError, initModel, parseSpec, z } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import {
  checkDeterminism,
  checkDisposesToBaseline,
  checkFitReducesLoss,
  checkFunctionPreserving,
  checkNoLeaks,
  checkOptionValidation,
  checkRefusals,
  checkShapes,
  disposeGrown,
  growFixture,
  specDifferences,
} from './checks.js'
import { finetunePadOperator, zeroPad, zeroPadOperator } from './examples.testutil.js'
import { createTestFit, type FitRecord } from './fit.js'
import { allFixtures, claimedFixtures, defaultFixture } from './fixtures.js'
import { describeGrowthOperator } from './suite.js'
import { syntheticBatches } from './synthetic.js'

// The suite itself, on a correct fixed operator and a correct learned one.
describeGrowthOperator(zeroPadOperator, {
  exclude: { 'vit/depth': 'exercises the exclusion path: reasons are printed and the test is skipped' },
})
describeGrowthOperator(finetunePadOperator, { families: ['decoder'], fitSteps: 15 })

const fixture = defaultFixture('decoder', 'ffn')

describe('checks catch broken operators', () => {
  it('a function-preservation claim that does not hold is reported with the measured difference', async () => {
    const noisy = defineOperator({
      ...zeroPadOperator,
      name: 'noisy',
      async grow(source, target, ctx, options) {
        const r = await zeroPadOperator.grow(source, target, ctx, options)
        const w = r.model.params['layers.0.mlp.fc2.weight']
        r.model.params['layers.0.mlp.fc2.weight'] = tf.tidy(() =>
          tf.add(w, tf.randomNormal(w.shape, 0, 0.1, 'float32', 3)),
        )
        w.dispose()
        return r
      },
    })
    const g = await growFixture(noisy, fixture, { scale: 1 }, 7)
    try {
      expect(() => checkFunctionPreserving(fixture, g)).toThrow(
        /claims to preserve the function, but max \|Δ logits\| = \d/,
      )
    } finally {
      disposeGrown(g)
    }
  })

  it('a leaked tensor is counted', async () => {
    const leaky = defineOperator({
      ...zeroPadOperator,
      name: 'leaky',
      async grow(source, target, ctx, options) {
        tf.ones([2, 2])
        return zeroPadOperator.grow(source, target, ctx, options)
      },
    })
    await expect(checkNoLeaks(leaky, fixture, { scale: 1 }, 7)).rejects.toThrow(/leaked 1 tensor/)
    const before = tf.memory().numTensors
    const g = await growFixture(leaky, fixture, { scale: 1 }, 7)
    expect(() => checkDisposesToBaseline(fixture, g, before)).toThrow(/leaked 1 tensor/)
  })

  it('accepting a shrink or an unclaimed kind of growth fails', () => {
    const lax = defineOperator({ ...zeroPadOperator, name: 'lax', check: () => {} })
    expect(() => checkRefusals(lax, { scale: 1 }, claimedFixtures(lax.capabilities, allFixtures()))).toThrow(
      /accepted .* which it shrinks/,
    )
    const wrongError = defineOperator({
      ...zeroPadOperator,
      name: 'wrong-error',
      check: () => {
        throw new Error('no')
      },
    })
    expect(() => checkRefusals(wrongError, { scale: 1 }, [fixture])).toThrow(/expected a GrowthError/)
  })

  it('options: a schema that ignores unknown options, or names nothing, fails', () => {
    const loose = defineOperator({
      ...zeroPadOperator,
      name: 'loose',
      options: z.object({ scale: z.number().default(1) }),
    })
    expect(() => checkOptionValidation(loose, {})).toThrow(/notAnOption=1 was accepted/)
    expect(checkOptionValidation(zeroPadOperator, {})).toEqual([
      'option scale=-1',
      'the unknown option notAnOption=1',
    ])
  })

  it('nondeterminism under a fixed seed is found', async () => {
    let calls = 0
    const drifting = defineOperator({
      ...zeroPadOperator,
      name: 'drifting',
      async grow(source, target, ctx, options) {
        const r = await zeroPadOperator.grow(source, target, ctx, options)
        const b = r.model.params['norm.bias']
        r.model.params['norm.bias'] = tf.add(b, ++calls)
        b.dispose()
        return r
      },
    })
    await expect(checkDeterminism(drifting, fixture, { scale: 1 }, 7)).rejects.toThrow(
      /differ in "norm.bias" by up to 1/,
    )
  })

  it('wrong shapes and a fit that does not help are reported', async () => {
    const g = await growFixture(zeroPadOperator, fixture, { scale: 1 }, 7)
    try {
      expect(() =>
        checkShapes(zeroPadOperator, { ...fixture, target: { ...fixture.target, dFF: 96 } }, g),
      ).toThrow(/differs from the target in dFF \(64 vs 96\)/)
    } finally {
      disposeGrown(g)
    }
    await expect(
      checkFitReducesLoss(finetunePadOperator, fixture, { steps: 5, learningRate: 0 }, 7, 5),
    ).rejects.toThrow(/did not reduce the held-out loss/)
    await expect(
      checkFitReducesLoss(finetunePadOperator, fixture, { steps: 0, learningRate: 0.01 }, 7, 5),
    ).rejects.toThrow(/asked ctx.fit for 0 steps/)
  })

  it('refusing a claimed fixture names the fixture and the way out', async () => {
    const picky = defineOperator({
      ...zeroPadOperator,
      name: 'picky',
      check: () => {
        throw new GrowthError('picky: no')
      },
    })
    await expect(growFixture(picky, fixture, { scale: 1 }, 7)).rejects.toThrow(
      /exclude "decoder\/ffn" with a reason/,
    )
  })

  it('specs compare by value, not by the order their keys were set in', () => {
    const a = defaultFixture('decoder', 'moe').target
    const reordered = Object.fromEntries(Object.entries(a).reverse()) as typeof a
    expect(specDifferences(a, reordered)).toEqual([])
    expect(specDifferences(a, { ...a, moe: { ...a.moe!, topK: 1 } })).toEqual(['moe'])
  })

  it('exclusions without a reason, or matching nothing, are refused', () => {
    expect(() => describeGrowthOperator(zeroPadOperator, { exclude: { leaks: '' } })).toThrow(
      /needs a written reason/,
    )
    expect(() =>
      describeGrowthOperator(zeroPadOperator, {
        exclude: { 'vit/widht': 'a typo must not silently skip nothing' },
      }),
    ).toThrow(/"vit\/widht" matches no check or fixture/)
    expect(() =>
      describeGrowthOperator(zeroPadOperator, {
        exclude: { 'leaks:decoder/width': 'zero-pad does not claim width growth' },
      }),
    ).toThrow(/matches no check or fixture/)
  })
})

describe('fixtures, batches and fit', () => {
  it('default fixtures grow exactly one axis and are filtered by capabilities', () => {
    const all = allFixtures()
    expect(all).toHaveLength(15)
    const width = defaultFixture('encoder', 'width')
    expect([width.source.dModel, width.target.dModel]).toEqual([16, 32])
    expect(width.target.nLayers).toBe(width.source.nLayers)
    expect(claimedFixtures(zeroPadOperator.capabilities, all).map((f) => f.kind)).not.toContain('width')
  })

  it("synthetic batches have the shapes forward() expects and the decoder rule t' = 3t + 1 mod V", () => {
    const before = tf.memory().numTensors
    const dec = syntheticBatches(fixture.target, 1).next()
    const [x, y] = [dec.inputs.arraySync() as number[][], dec.targets.arraySync() as number[][]]
    expect(y[0][0]).toBe((3 * x[0][0] + 1) % 32)
    expect(y[0].slice(0, -1)).toEqual(x[0].slice(1))
    const enc = syntheticBatches(defaultFixture('encoder', 'ffn').target, 1).next()
    expect(enc.weights!.sum().dataSync()[0]).toBeGreaterThanOrEqual(4)
    const vit = syntheticBatches(defaultFixture('vit', 'ffn').target, 1).next()
    expect([vit.inputs.shape, vit.targets.shape]).toEqual([[4, 8, 8, 1], [4]])
    tf.dispose([dec, enc, vit].flatMap((b) => Object.values(b)))
    expect(tf.memory().numTensors).toBe(before + 1) // the sum above, disposed next
  })

  it('fit takes the hand-computed AdamW step on (w - 3)^2', async () => {
    const records: FitRecord[] = []
    const source = syntheticBatches(fixture.target, 1)
    const adamFit = createTestFit(source, records)
    const w = tf.variable(tf.scalar(1))
    // g = 2(w - 3) = -4; the bias-corrected Adam direction is sign(g) = -1:
    // w1 = w0 (1 - lr·wd) + lr = 1 · (1 - 0.05) + 0.1 = 1.05.
    await adamFit({
      trainables: { w },
      loss: () => tf.square(tf.sub(w, 3)) as tf.Scalar,
      steps: 1,
      learningRate: 0.1,
      weightDecay: 0.5,
      flopsPerStep: 1,
    })
    expect(w.dataSync()[0]).toBeCloseTo(1.05, 6)
    expect(records[0].heldOutBefore).toBeCloseTo(4, 6)
    expect(records[0].heldOutAfter).toBeCloseTo(1.95 ** 2, 5)
    w.dispose()
  })

  it('zero padding preserves the function of a pre-norm model (independent check of the example)', () => {
    const src = initModel(
      parseSpec({
        family: 'decoder',
        vocabSize: 16,
        maxSeqLen: 4,
        dModel: 8,
        nLayers: 1,
        nHeads: 2,
        dFF: 16,
      }),
      3,
    )
    const target = parseSpec({ ...src.spec, nLayers: 2, dFF: 24 })
    const padded = zeroPad(src.params, target)
    expect(padded['layers.0.mlp.fc1.weight'].shape).toEqual([8, 24])
    expect(padded['layers.1.attn.o.weight'].max().dataSync()[0]).toBe(0)
    tf.dispose([...Object.values(padded), ...Object.values(src.params)])
  })
})
