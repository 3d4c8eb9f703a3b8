import {
  forward,
  type Model,
  maxAbsLogitDiff,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  randomInputs,
  type TransformerSpec,
} from '@sprout/core'
import { growthRefusal } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { type UpcycleOptions, upcycle } from './index.js'
import { dispose, source, spec } from './source.testutil.js'

const opts = (raw: Record<string, unknown> = {}): UpcycleOptions => parseOptions(upcycle, raw)
async function grow(src: Model, target: TransformerSpec, raw: Record<string, unknown> = {}, seed = 5) {
  upcycle.check(src.spec, target, opts(raw))
  return upcycle.grow(src, target, quietGrowthContext(seed), opts(raw))
}
const values = (t: tf.Tensor) => Array.from(t.dataSync())
/** Max |a − b| of the two models' logits on the same random tokens (no capacity limit). */
const logitDiff = (a: Model, b: Model, seed: number) => maxAbsLogitDiff(a, b, { seed, batchSize: 3 })

describe('upcycle granularity (virtual-group upcycling): lossless at initialisation', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ['gelu with biases, g=2, 8 experts top-2', {}, { granularity: 2, experts: 8, topK: 2 }],
    ['gelu with biases, g=4, 8 experts top-4', {}, { granularity: 4, experts: 8, topK: 4 }],
    ['gelu, g=2, 8 experts top-4 (two groups per token)', {}, { granularity: 2, experts: 8, topK: 4 }],
    [
      'swiglu rmsnorm without biases, g=2, 8 experts top-2',
      { activation: 'swiglu', norm: 'rmsnorm', bias: false },
      { granularity: 2, experts: 8, topK: 2 },
    ],
    [
      'swiglu with biases, g=5, 10 experts top-5',
      { activation: 'swiglu' },
      { granularity: 5, experts: 10, topK: 5 },
    ],
  ]
  for (const [name, arch, raw] of cases)
    it(`${name}: the MoE model's logits equal the dense model's`, async () => {
      const s = spec('decoder', arch)
      const src = source(s)
      const before = tf.memory().numTensors
      // A sharp router (std 2): groups get very different probabilities, so top-k really chooses.
      const r = await grow(src, s, { ...raw, layers: 'all', routerStd: 2 })
      const g = raw.granularity as number
      expect(r.model.spec.moe!.expertDFF).toBe(s.dFF / g)
      expect(r.report.details.granularity).toBe(g)
      expect(r.report.functionPreserving).toBe(true)
      expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
      // Independent of the report: other inputs, and logits of order one or more.
      expect(logitDiff(src, r.model, 91)).toBeLessThan(1e-4)
      const scale = tf.tidy(() => tf.max(tf.abs(forward(src, randomInputs(s, 2, 6, 1)))).dataSync()[0])
      expect(scale).toBeGreaterThan(0.5)
      dispose(r.model)
      expect(tf.memory().numTensors).toBe(before)
      dispose(src)
    })

  it('expert j holds shard j mod g (fc2 rows times g), and each router group shares one column', async () => {
    const s = spec('decoder', { activation: 'swiglu', dFF: 8 })
    const src = source(s)
    const r = await grow(src, s, { granularity: 2, experts: 6, topK: 2, layers: [1] })
    const dense = (n: string) => src.params[`layers.1.mlp.${n}`].arraySync() as number[][]
    const fc1 = dense('fc1.weight')
    const gate = dense('gate.weight')
    const fc2 = dense('fc2.weight')
    const b1 = values(src.params['layers.1.mlp.fc1.bias'])
    for (let e = 0; e < 6; e++) {
      const shard = e % 2
      const cols = [0, 1, 2, 3].map((j) => shard * 4 + j)
      const p = (n: string) => r.model.params[`layers.1.mlp.experts.${e}.${n}`]
      expect(p('fc1.weight').arraySync()).toEqual(fc1.map((row) => cols.map((c) => row[c])))
      expect(p('gate.weight').arraySync()).toEqual(gate.map((row) => cols.map((c) => row[c])))
      expect(values(p('fc1.bias'))).toEqual(cols.map((c) => b1[c]))
      const rows = p('fc2.weight').arraySync() as number[][]
      rows.forEach((row, j) => {
        row.forEach((v, d) => {
          expect(v).toBeCloseTo(2 * fc2[cols[j]][d], 6)
        })
      })
      // The fc2 bias is the dense one: the g shards' gates sum to the group's share.
      expect(values(p('fc2.bias'))).toEqual(values(src.params['layers.1.mlp.fc2.bias']))
    }
    const router = r.model.params['layers.1.mlp.router.weight'].arraySync() as number[][]
    for (const row of router) {
      expect(row[0]).toBe(row[1])
      expect(row[2]).toBe(row[3])
      expect(row[4]).toBe(row[5])
      expect(row[0]).not.toBe(row[2])
    }
    dispose(r.model)
    dispose(src)
  })

  it('is lossy once a router group is split (the test can fail)', async () => {
    const s = spec('decoder')
    const src = source(s)
    const r = await grow(src, s, { granularity: 2, experts: 8, topK: 2, layers: 'all', routerStd: 2 })
    // Ungrouped router columns: a token's top-2 may pick shards of different groups.
    const broken: Model = { spec: r.model.spec, params: { ...r.model.params } }
    const fresh: tf.Tensor[] = []
    for (const l of r.model.spec.moe!.layers) {
      const name = `layers.${l}.mlp.router.weight`
      const t = tf.randomNormal(r.model.params[name].shape, 0, 2, 'float32', l + 1)
      fresh.push(t)
      broken.params[name] = t
    }
    expect(logitDiff(src, broken, 91)).toBeGreaterThan(1e-2)
    tf.dispose(fresh)
    dispose(r.model)
    dispose(src)
  })

  it('reads the granularity from the target spec moe.expertDFF, or refuses what cannot be lossless', async () => {
    const s = spec('encoder', { dFF: 24 })
    const target = parseSpec({ ...s, moe: { experts: 6, topK: 3, layers: [0, 2], expertDFF: 8 } })
    const src = source(s)
    const r = await grow(src, target)
    expect(r.model.spec.moe).toEqual(target.moe)
    expect(r.report.details.granularity).toBe(3)
    expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
    dispose(r.model)
    dispose(src)
    const refusals: [TransformerSpec, Record<string, unknown>, RegExp][] = [
      [
        s,
        { granularity: 5, experts: 10, topK: 5 },
        /granularity: 5 does not divide the intermediate size dFF 24/,
      ],
      [s, { granularity: 4, experts: 6, topK: 4 }, /6 experts are not a multiple of granularity 4/],
      [s, { granularity: 2, experts: 8, topK: 3 }, /topK 3 is not a multiple of granularity 2/],
      [target, { granularity: 2 }, /granularity=2 contradicts the target spec's moe.expertDFF=8/],
      [
        parseSpec({ ...s, moe: { experts: 4, layers: [0], expertDFF: 7 } }),
        {},
        /expertDFF 7 does not divide the intermediate size dFF 24/,
      ],
    ]
    for (const [t, raw, message] of refusals) {
      expect(growthRefusal(() => upcycle.check(s, t, opts(raw)))).toMatch(message)
    }
    expect(() => opts({ granularity: 0 })).toThrow(/option granularity/)
    expect(() => opts({ granularity: 1.5 })).toThrow(/option granularity/)
  })

  it('granularity 1 is plain upcycling, bit for bit', async () => {
    const s = spec('decoder')
    const src = source(s)
    const a = await grow(src, s, { experts: 4 })
    const b = await grow(src, s, { experts: 4, granularity: 1 })
    expect(b.model.spec).toEqual(a.model.spec)
    expect('expertDFF' in b.model.spec.moe!).toBe(false)
    for (const name of Object.keys(a.model.params))
      expect(values(b.model.params[name])).toEqual(values(a.model.params[name]))
    dispose(a.model)
    dispose(b.model)
    dispose(src)
  })
})
