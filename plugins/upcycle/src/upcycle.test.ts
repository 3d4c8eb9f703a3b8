import {
  forward,
  loss,
  type Model,
  maxAbsLogitDiff,
  type Params,
  paramTable,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  randomInputs,
  type TransformerSpec,
} from '@sprout/core'
import lemon from '@sprout/lemon'
import { growthRefusal } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import upcycleDefault, {
  type UpcycleOptions,
  upcycle,
  upcycledLayers,
  upcycleOptimizerState,
} from './index.js'
import { dispose, source, spec } from './source.testutil.js'

const ctx = quietGrowthContext
const opts = (raw: Record<string, unknown> = {}): UpcycleOptions => parseOptions(upcycle, raw)
async function grow(src: Model, target: TransformerSpec, raw: Record<string, unknown> = {}, seed = 5) {
  upcycle.check(src.spec, target, opts(raw))
  return upcycle.grow(src, target, ctx(seed), opts(raw))
}

describe('upcycle: lossless conversion', () => {
  const variants: [string, TransformerSpec][] = [
    ['decoder gelu pre-norm', spec('decoder')],
    [
      'decoder swiglu rmsnorm rotary GQA, no bias',
      spec('decoder', {
        activation: 'swiglu',
        norm: 'rmsnorm',
        bias: false,
        positional: 'rotary',
        nHeads: 4,
        headDim: 4,
        nKVHeads: 2,
      }),
    ],
    [
      'encoder post-norm relu with MLM head',
      spec('encoder', { normPlacement: 'post', activation: 'relu', mlmHead: true }),
    ],
    ['vit', spec('vit')],
    ['vit post-norm gelu_tanh', spec('vit', { normPlacement: 'post', activation: 'gelu_tanh' })],
  ]
  for (const [name, s] of variants)
    it(`${name}: max |Δlogits| < 1e-4 with default options`, async () => {
      const src = source(s)
      const before = tf.memory().numTensors
      const r = await grow(src, s)
      expect(r.model.spec.moe).toEqual({
        experts: 8,
        topK: 2,
        layers: [1, 3],
        capacityFactor: 1.25,
        evalCapacityFactor: 2,
        auxLossWeight: 0.01,
        zLossWeight: 0.001,
      })
      expect(r.report.maxAbsLogitDiff).not.toBeNull()
      expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
      // Independent of the report: core's verify on other inputs.
      expect(maxAbsLogitDiff(src, r.model, { seed: 77 })).toBeLessThan(1e-4)
      // The logits are of order one or more, so the bound means something.
      const scale = tf.tidy(() => tf.max(tf.abs(forward(src, randomInputs(s, 2, 6, 1)))).dataSync()[0])
      expect(scale).toBeGreaterThan(0.5)
      dispose(r.model)
      expect(tf.memory().numTensors).toBe(before)
      dispose(src)
    })

  it('experts are exact copies of the dense MLP; the router is normal(0.02) and seeded', async () => {
    const s = spec('decoder', { nLayers: 2, dModel: 64, nHeads: 4, dFF: 32 })
    const src = source(s)
    const a = await grow(src, s, { experts: 4, layers: 'all', verify: 'never' }, 11)
    const b = await grow(src, s, { experts: 4, layers: 'all', verify: 'never' }, 11)
    const c = await grow(src, s, { experts: 4, layers: 'all', verify: 'never' }, 12)
    for (const l of [0, 1])
      for (let e = 0; e < 4; e++)
        for (const n of ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'])
          expect(a.model.params[`layers.${l}.mlp.experts.${e}.${n}`].dataSync()).toEqual(
            src.params[`layers.${l}.mlp.${n}`].dataSync(),
          )
    const router = a.model.params['layers.0.mlp.router.weight']
    expect(router.shape).toEqual([64, 4])
    const w = Array.from(router.dataSync())
    const mean = w.reduce((x, y) => x + y, 0) / w.length
    const std = Math.sqrt(w.reduce((x, y) => x + (y - mean) ** 2, 0) / w.length)
    expect(Math.abs(mean)).toBeLessThan(0.005)
    expect(std).toBeGreaterThan(0.017)
    expect(std).toBeLessThan(0.023)
    for (const name of Object.keys(a.model.params)) {
      expect(b.model.params[name].dataSync()).toEqual(a.model.params[name].dataSync())
      if (!name.includes('router') && !name.includes('experts'))
        expect(a.model.params[name].dataSync()).toEqual(src.params[name].dataSync())
    }
    expect(c.model.params['layers.0.mlp.router.weight'].dataSync()).not.toEqual(router.dataSync())
    expect(a.report.growthFlops).toBeGreaterThan(0)
    for (const m of [a, b, c]) dispose(m.model)
    dispose(src)
  })

  it('noise makes the experts differ slightly and is reported as not function preserving', async () => {
    const s = spec('decoder')
    const src = source(s)
    const r = await grow(src, s, { noiseStd: 1e-3, experts: 2, topK: 1 })
    const e0 = r.model.params['layers.1.mlp.experts.0.fc1.weight']
    const e1 = r.model.params['layers.1.mlp.experts.1.fc1.weight']
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(e0, e1))).dataSync()[0])
    expect(d).toBeGreaterThan(1e-4)
    expect(d).toBeLessThan(1e-2)
    // Biases are not perturbed.
    expect(r.model.params['layers.1.mlp.experts.1.fc1.bias'].dataSync()).toEqual(
      src.params['layers.1.mlp.fc1.bias'].dataSync(),
    )
    expect(r.report.functionPreserving).toBe(false)
    expect(r.report.maxAbsLogitDiff!).toBeGreaterThan(0)
    dispose(r.model)
    dispose(src)
  })

  it('reports the logit difference at the evaluation capacity (drops possible there)', async () => {
    const s = spec('decoder')
    const src = source(s)
    const roomy = await grow(src, s, { evalCapacityFactor: 4 })
    // Capacity 4·k·N/E ≥ N·k/E·4: with 8 experts an expert would need half of all choices to overflow.
    expect(roomy.report.details.evalCapacityLogitDiff as number).toBeLessThan(1e-4)
    const tight = await grow(src, s, { evalCapacityFactor: 0.25 })
    expect(tight.report.details.evalCapacityLogitDiff as number).toBeGreaterThan(1e-3)
    expect(tight.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
    dispose(roomy.model)
    dispose(tight.model)
    dispose(src)
  })
})

describe('upcycle: training the upcycled model', () => {
  it('gradients reach the router and differ between experts (routing breaks the symmetry)', async () => {
    const s = spec('decoder', { nLayers: 2 })
    const src = source(s)
    const r = await grow(src, s, { experts: 4, layers: [1], verify: 'never' })
    const vars = Object.fromEntries(Object.entries(r.model.params).map(([k, v]) => [k, tf.variable(v)]))
    const ids = randomInputs(s, 4, 16, 3)
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(() =>
      loss({ spec: r.model.spec, params: vars }, { inputs: ids, targets: ids }),
    )
    const g = (name: string) => grads[vars[name].name]
    const norm = (t: tf.Tensor) => tf.tidy(() => tf.norm(t).dataSync()[0])
    expect(norm(g('layers.1.mlp.router.weight'))).toBeGreaterThan(0)
    // Identical experts get different gradients because they see different tokens.
    const fc1 = [0, 1, 2, 3].map((e) => g(`layers.1.mlp.experts.${e}.fc1.weight`))
    const used = fc1.filter((t) => norm(t) > 0)
    expect(used.length).toBeGreaterThanOrEqual(2)
    expect(tf.tidy(() => norm(tf.sub(used[0], used[1])))).toBeGreaterThan(1e-3 * norm(used[0]))
    tf.dispose([value, ...Object.values(grads)])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([ids, ...Object.values(vars)])
    dispose(r.model)
    dispose(src)
  })
})

describe('upcycle: options and refusals', () => {
  it('default layers are every other one (1, 3, ...), or all, or a list', () => {
    expect(upcycledLayers(4)).toEqual([1, 3])
    expect(upcycledLayers(5)).toEqual([1, 3])
    expect(upcycledLayers(1)).toEqual([0])
    expect(upcycledLayers(3, 'all')).toEqual([0, 1, 2])
    expect(upcycledLayers(4, [2, 0])).toEqual([0, 2])
    expect(() => upcycledLayers(4, [4])).toThrow(/layer 4 does not exist/)
    expect(() => upcycledLayers(4, [1, 1])).toThrow(/listed twice/)
  })

  it('takes MoE settings from the target spec and refuses contradictions', async () => {
    const s = spec('encoder')
    const target = parseSpec({ ...s, moe: { experts: 4, topK: 1, layers: [0, 2], capacityFactor: 1.5 } })
    upcycle.check(s, target, opts({ experts: 4 }))
    const src = source(s)
    const r = await grow(src, target)
    expect(r.model.spec.moe).toEqual(target.moe)
    dispose(r.model)
    dispose(src)
    expect(() => upcycle.check(s, target, opts({ experts: 8 }))).toThrow(
      /option experts=8 contradicts the target spec's moe.experts=4/,
    )
    expect(() => upcycle.check(s, target, opts({ layers: 'every-other' }))).toThrow(
      /contradicts the target spec's moe.layers/,
    )
    expect(() => upcycle.check(s, s, opts({ experts: 2, topK: 3 }))).toThrow(/topK 3 exceeds the 2 experts/)
  })

  it('refuses width, depth and architecture changes, suggesting lemon first', () => {
    const s = spec('decoder')
    for (const change of [{ dModel: 24, nHeads: 6 }, { nLayers: 6 }, { dFF: 40 }, { activation: 'relu' }]) {
      const t = parseSpec({ ...s, ...change })
      expect(growthRefusal(() => upcycle.check(s, t, opts()))).toMatch(/grow with lemon first, then upcycle/)
    }
    const moeSource = parseSpec({ ...s, moe: { experts: 2, layers: [0] } })
    expect(() => upcycle.check(moeSource, moeSource, opts())).toThrow(/already has mixture-of-experts layers/)
  })

  it('rejects malformed options with the option named', () => {
    expect(() => opts({ experts: 0 })).toThrow(/option experts/)
    expect(() => opts({ layers: 'odd' })).toThrow(/option layers/)
    expect(() => opts({ noise: 0.1 })).toThrow(/unknown field\(s\) "noise"/)
  })

  it('is the default export and declares a lossless MoE operator', () => {
    expect(upcycleDefault).toBe(upcycle)
    expect(upcycle.capabilities).toMatchObject({
      moe: true,
      functionPreserving: true,
      width: false,
      depth: false,
    })
  })
})

describe('upcycle: composition and optimizer state', () => {
  it('upcycles a LEMON-grown model losslessly (lemon, then upcycle)', async () => {
    for (const family of ['decoder', 'vit'] as const) {
      const small = spec(family, { nLayers: 2 })
      const big = parseSpec({ ...small, dModel: 24, nHeads: 6, nLayers: 4, dFF: 40 })
      const src = source(small)
      const grown = await lemon.grow(src, big, ctx(2), parseOptions(lemon, { noiseStd: 0 }))
      const r = await grow(grown.model, grown.model.spec, { experts: 4 })
      expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
      // End to end: the upcycled big model still computes the small source's function.
      expect(maxAbsLogitDiff(src, r.model, { seed: 8 })).toBeLessThan(1e-4)
      dispose(r.model)
      dispose(grown.model)
      dispose(src)
    }
  })

  it('upcycleOptimizerState copies dense moments into every expert and zeros the routers', () => {
    const s = spec('decoder', { nLayers: 2 })
    const moeSpec = parseSpec({ ...s, moe: { experts: 3, layers: [1] } })
    const state: Params = {}
    let i = 0
    for (const p of paramTable(s))
      for (const slot of ['m', 'v']) state[`${slot}.${p.name}`] = tf.fill(p.shape, ++i)
    const before = tf.memory().numTensors
    const out = upcycleOptimizerState(state, moeSpec)
    const names = paramTable(moeSpec).map((p) => p.name)
    expect(Object.keys(out).sort()).toEqual(
      [...names.map((n) => `m.${n}`), ...names.map((n) => `v.${n}`)].sort(),
    )
    for (let e = 0; e < 3; e++)
      expect(out[`v.layers.1.mlp.experts.${e}.fc2.weight`].dataSync()).toEqual(
        state['v.layers.1.mlp.fc2.weight'].dataSync(),
      )
    expect(out['m.layers.0.mlp.fc1.weight'].dataSync()).toEqual(state['m.layers.0.mlp.fc1.weight'].dataSync())
    expect(Array.from(out['m.layers.1.mlp.router.weight'].dataSync()).every((v) => v === 0)).toBe(true)
    expect(out['m.layers.1.mlp.router.weight'].shape).toEqual([12, 3])
    tf.dispose(Object.values(out))
    expect(tf.memory().numTensors).toBe(before)
    expect(() => upcycleOptimizerState({ 'm.nope': tf.scalar(0) }, moeSpec)).toThrow(
      /not "<slot>.<parameter>"/,
    )
    const partial = { 'm.norm.weight': state['m.norm.weight'] }
    expect(() => upcycleOptimizerState(partial, moeSpec)).toThrow(/has no "m\.embed\.tokens"/)
    expect(tf.memory().numTensors).toBe(before + 1)
    expect(() => upcycleOptimizerState(state, s)).toThrow(/no moe field/)
    tf.dispose(Object.values(state))
  })
})
