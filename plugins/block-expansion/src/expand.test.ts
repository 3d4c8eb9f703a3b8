import {
  computeLoss,
  disposeModel,
  maxAbsLogitDiff,
  parseOptions,
  quietGrowthContext,
  type TransformerSpec,
} from '@sprout/core'
import { depthTestDecoder, growthRefusal, perturbedModel } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import blockExpansion, { checkBlockExpansion, expansionPlan } from './index.js'

const decoder = depthTestDecoder

/** A source whose every parameter (biases and norms included) is random, so a wrong copy shows. */
const perturbed = (spec: TransformerSpec, seed: number) => perturbedModel(spec, seed, 0.3)

async function grow(src: TransformerSpec, target: TransformerSpec, options: Record<string, unknown> = {}) {
  const source = perturbed(src, 11)
  const result = await blockExpansion.grow(
    source,
    target,
    quietGrowthContext(),
    parseOptions(blockExpansion, options),
  )
  return { source, result }
}

const refusal = growthRefusal

const values = (t: tf.Tensor) => Array.from(t.dataSync())

describe('expansionPlan', () => {
  it('inserts a copy of layer j after it when j + 1 is a multiple of every (hand-written)', () => {
    expect(expansionPlan(4, 2)).toEqual([
      { source: 0, inserted: false },
      { source: 1, inserted: false },
      { source: 1, inserted: true },
      { source: 2, inserted: false },
      { source: 3, inserted: false },
      { source: 3, inserted: true },
    ])
    // LLaMA Pro's 32 → 40 (every 4): new blocks at 4, 9, 14, ..., 39, copying 3, 7, ..., 31.
    const plan = expansionPlan(32, 4)
    expect(plan).toHaveLength(40)
    expect(plan.flatMap((l, i) => (l.inserted ? [[i, l.source]] : []))).toEqual(
      Array.from({ length: 8 }, (_, k) => [5 * k + 4, 4 * k + 3]),
    )
  })
})

describe('block-expansion grow', () => {
  it('copies source layers unchanged, inserts zero-output copies of the layer before, and records them as new', async () => {
    const src = decoder({ tieEmbeddings: false })
    const { source, result } = await grow(src, decoder({ tieEmbeddings: false, nLayers: 6 }), { every: 2 })
    const p = result.model.params
    const sourceOf = [0, 1, 1, 2, 3, 3]
    for (const [name, t] of Object.entries(p)) {
      const m = /^layers\.(\d+)\.(.*)$/.exec(name)
      const from = m ? `layers.${sourceOf[Number(m[1])]}.${m[2]}` : name
      const zeroed = m && [2, 5].includes(Number(m[1])) && /^(attn\.o|mlp\.fc2)\./.test(m[2])
      if (zeroed)
        expect(
          values(t).every((v) => v === 0),
          name,
        ).toBe(true)
      else expect(values(t), name).toEqual(values(source.params[from]))
    }
    expect(result.newParams!.sort()).toEqual(
      Object.keys(p)
        .filter((n) => n.startsWith('layers.2.') || n.startsWith('layers.5.'))
        .sort(),
    )
    expect(result.report.details).toMatchObject({ every: 2, insertedLayers: [2, 5] })
    disposeModel(result.model)
    disposeModel(source)
  })

  it('zeroes every expert fc2 (weights and biases) of an inserted MoE block and keeps its router', async () => {
    const moe = { experts: 3, topK: 2 }
    const src = decoder({ nLayers: 2, moe: { ...moe, layers: [1] } })
    const { source, result } = await grow(src, decoder({ nLayers: 4, moe: { ...moe, layers: [2, 3] } }))
    const p = result.model.params
    for (let e = 0; e < 3; e++) {
      expect(values(p[`layers.3.mlp.experts.${e}.fc2.weight`]).every((v) => v === 0)).toBe(true)
      expect(values(p[`layers.3.mlp.experts.${e}.fc2.bias`]).every((v) => v === 0)).toBe(true)
      expect(values(p[`layers.3.mlp.experts.${e}.fc1.weight`])).toEqual(
        values(source.params[`layers.1.mlp.experts.${e}.fc1.weight`]),
      )
    }
    expect(values(p['layers.3.mlp.router.weight'])).toEqual(
      values(source.params['layers.1.mlp.router.weight']),
    )
    expect(maxAbsLogitDiff(source, result.model)).toBeLessThan(1e-5)
    disposeModel(result.model)
    disposeModel(source)
  })

  it('is exactly function preserving on pre-norm models across families and architectures', async () => {
    const cases: Record<string, unknown>[] = [
      {},
      {
        norm: 'rmsnorm',
        activation: 'swiglu',
        bias: false,
        positional: 'rotary',
        nHeads: 4,
        headDim: 4,
        nKVHeads: 2,
      },
      { activation: 'relu', tieEmbeddings: false },
      { family: 'encoder', mlmHead: true, tieEmbeddings: true },
      { family: 'encoder', activation: 'gelu_tanh', norm: 'rmsnorm' },
      { family: 'vit', vocabSize: 0, maxSeqLen: 5, image: { size: 8, patch: 4, channels: 1, classes: 3 } },
      { moe: { experts: 4, topK: 2, layers: [0, 2] } },
    ]
    const worst: number[] = []
    for (const over of cases) {
      for (const every of [1, 2, 4]) {
        const moe = over.moe as { layers: number[] } | undefined
        const plan = expansionPlan(4, every)
        const target = decoder({
          ...over,
          nLayers: plan.length,
          ...(moe
            ? { moe: { ...moe, layers: plan.flatMap((l, i) => (moe.layers.includes(l.source) ? [i] : [])) } }
            : {}),
        })
        const { source, result } = await grow(decoder(over), target, { every })
        const diff = maxAbsLogitDiff(source, result.model)
        worst.push(diff)
        expect(diff, `${JSON.stringify(over)} every=${every}`).toBeLessThan(1e-5)
        disposeModel(result.model)
        disposeModel(source)
      }
    }
    expect(worst.length).toBe(21)
  })

  it('new blocks are trainable: their zeroed projections get non-zero gradients', async () => {
    const { source, result } = await grow(decoder({ nLayers: 2 }), decoder({ nLayers: 3 }), { every: 2 })
    const inputs = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], undefined, 'int32')
    const targets = tf.tensor2d([[2, 3, 4, 5, 6, 7, 8, 9]], undefined, 'int32')
    const names = ['layers.2.attn.o.weight', 'layers.2.mlp.fc2.weight']
    const grads = tf.tidy(() => {
      const g = tf.grads((o: tf.Tensor, f: tf.Tensor) => {
        const params = { ...result.model.params, [names[0]]: o, [names[1]]: f }
        return computeLoss({ spec: result.model.spec, params }, { inputs, targets }, { training: false }).loss
      })
      return g(names.map((n) => result.model.params[n])).map((t) => tf.max(tf.abs(t)).dataSync()[0])
    })
    for (const g of grads) expect(g).toBeGreaterThan(1e-6)
    tf.dispose([inputs, targets])
    disposeModel(result.model)
    disposeModel(source)
  })

  it('leaks no tensors', async () => {
    const before = tf.memory().numTensors
    const { source, result } = await grow(decoder(), decoder({ nLayers: 8 }))
    disposeModel(result.model)
    disposeModel(source)
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('block-expansion check', () => {
  it('derives every from the target when the option is absent', () => {
    expect(checkBlockExpansion(decoder({ nLayers: 32 }), decoder({ nLayers: 40 }))).toBe(4)
    expect(checkBlockExpansion(decoder({ nLayers: 12 }), decoder({ nLayers: 24 }))).toBe(1)
  })

  it('refuses a target inconsistent with every, naming both numbers and the fix', () => {
    const msg = refusal(() => checkBlockExpansion(decoder({ nLayers: 32 }), decoder({ nLayers: 48 }), 4))
    expect(msg).toContain('every=4')
    expect(msg).toContain('nLayers 48')
    expect(msg).toContain("set the target's nLayers to 40")
  })

  it('refuses every that does not divide the source layers, saying which values work', () => {
    const msg = refusal(() => checkBlockExpansion(decoder({ nLayers: 12 }), decoder({ nLayers: 14 }), 5))
    expect(msg).toContain('every=5')
    expect(msg).toContain('every=6 → 14 layers')
  })

  it('refuses a target no every can reach, listing the reachable layer counts', () => {
    const msg = refusal(() => checkBlockExpansion(decoder({ nLayers: 4 }), decoder({ nLayers: 7 })))
    expect(msg).toContain('nLayers 7')
    expect(msg).toContain('every=2 → 6 layers')
  })

  it('refuses width, heads and FFN changes', () => {
    for (const [field, value] of [
      ['dModel', 32],
      ['nHeads', 4],
      ['dFF', 64],
    ] as const)
      expect(
        refusal(() => checkBlockExpansion(decoder(), decoder({ nLayers: 8, [field]: value }))),
      ).toContain(field)
  })

  it('refuses post-norm models, saying why and what to use', () => {
    const msg = refusal(() =>
      checkBlockExpansion(decoder({ normPlacement: 'post' }), decoder({ normPlacement: 'post', nLayers: 8 })),
    )
    expect(msg).toContain('post-norm')
    expect(msg).toContain('not an identity')
    expect(msg).toMatch(/lemon.*net2net/)
  })

  it('refuses misplaced mixture-of-experts layers, naming the moe.layers to use', () => {
    const moe = { experts: 4, topK: 2 }
    const msg = refusal(() =>
      checkBlockExpansion(
        decoder({ moe: { ...moe, layers: [1] } }),
        decoder({ nLayers: 6, moe: { ...moe, layers: [1] } }),
        2,
      ),
    )
    expect(msg).toContain('moe.layers to [1, 2]')
  })

  it('refuses a non-integer or non-positive every at option parsing, naming the option', () => {
    for (const bad of [0, 1.5, -2, 'x'])
      expect(refusal(() => parseOptions(blockExpansion, { every: bad }))).toContain('every')
  })
})
