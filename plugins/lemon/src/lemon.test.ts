import {
  forward,
  GrowthError,
  initModel,
  type Model,
  maxAbsLogitDiff,
  paramTable,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  randomInputs,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
// Core's loop-based float64 reference forward (written from the math, independent of tfjs).
import { type RefParams, referenceForward } from '../../../packages/core/src/reference.testutil.js'
import lemonDefault, { depthSchedule, type LemonOptions, lemon, queryHeadMap } from './index.js'

const ctx = quietGrowthContext
const opts = (raw: Record<string, unknown> = {}): LemonOptions => parseOptions(lemon, raw)
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

function base(family: 'decoder' | 'encoder' | 'vit', extra: Record<string, unknown> = {}) {
  const img = family === 'vit' ? { image: { size: 8, patch: 4, channels: 3, classes: 5 } } : {}
  const text = family === 'vit' ? {} : { vocabSize: 23, maxSeqLen: 8 }
  return { family, ...img, ...text, dModel: 12, nLayers: 2, nHeads: 3, headDim: 4, dFF: 20, ...extra }
}

const worst = { diff: 0, rel: 0, cases: 0 }
afterAll(() => {
  console.log(
    `lemon: max |Δlogits| over ${worst.cases} grown models: ${worst.diff.toExponential(2)} (relative to max |logit|: ${worst.rel.toExponential(2)})`,
  )
})

/**
 * Grows a source with random norms and biases and compares the grown model's logits with the
 * source's, both from core's forward (independent of this package), on the same random inputs.
 */
async function growAndDiff(src: Record<string, unknown>, tgt: Record<string, unknown>, seed = 7) {
  const sSpec = parseSpec(src)
  const tSpec = parseSpec(tgt)
  const source = initModel(sSpec, seed)
  // Non-trivial norms (random gamma/beta) so the norm corrections are exercised, and weights
  // 5x core's init so activations and logits are of order one (a relative check means something).
  for (const p of paramTable(sSpec))
    if (p.kind === 'weight' || p.kind === 'embedding') {
      const old = source.params[p.name]
      source.params[p.name] = tf.mul(old, 5)
      old.dispose()
    }
  for (const p of paramTable(sSpec))
    if (p.kind === 'scale' || p.kind === 'shift' || p.kind === 'bias') {
      const old = source.params[p.name]
      source.params[p.name] = tf.tidy(() =>
        tf.add(p.kind === 'scale' ? 1 : 0, tf.randomNormal(p.shape, 0, 0.3, 'float32', seed + p.name.length)),
      )
      old.dispose()
    }
  lemon.check(sSpec, tSpec, opts())
  const result = await lemon.grow(source, tSpec, ctx(seed), opts({ verify: 'never' }))
  const diff = maxAbsLogitDiff(source, result.model, { seed: 99, seqLen: Math.min(6, sSpec.maxSeqLen) })

  const scale = tf.tidy(() => {
    const x = randomInputs(sSpec, 2, Math.min(6, sSpec.maxSeqLen), 99)
    return tf.max(tf.abs(forward(source, x))).dataSync()[0]
  })
  worst.diff = Math.max(worst.diff, diff)
  worst.rel = Math.max(worst.rel, diff / scale)
  worst.cases++
  return { diff, scale, result, source }
}

describe('lemon: lossless matrix', () => {
  const families = ['decoder', 'encoder', 'vit'] as const
  const variants: { name: string; extra: Record<string, unknown>; to: Record<string, unknown> }[] = []
  for (const norm of ['layernorm', 'rmsnorm'] as const)
    for (const act of ['gelu', 'swiglu', 'relu', 'gelu_tanh'] as const) {
      const bias = act === 'gelu' || act === 'relu'
      const tie = act !== 'relu'
      const e = { norm, activation: act, bias, tieEmbeddings: tie }
      // pre-norm: width indivisible + heads + ffn + depth
      variants.push({
        name: `${norm} ${act} pre bias=${bias} tie=${tie} 12->20 h3->5 L2->4`,
        extra: { ...e, normPlacement: 'pre' },
        to: { dModel: 20, nHeads: 5, dFF: 36, nLayers: 4 },
      })
      // pre-norm: divisible width, depth 2 -> 5 (two steps)
      variants.push({
        name: `${norm} ${act} pre 12->24 L2->5`,
        extra: { ...e, normPlacement: 'pre' },
        to: { dModel: 24, nHeads: 6, dFF: 40, nLayers: 5 },
      })
      // post-norm: divisible width (and indivisible for rmsnorm)
      variants.push({
        name: `${norm} ${act} post 12->${norm === 'rmsnorm' ? 30 : 36}`,
        extra: { ...e, normPlacement: 'post' },
        to: { dModel: norm === 'rmsnorm' ? 30 : 36, nHeads: 4, dFF: 27 },
      })
    }
  for (const family of families)
    for (const v of variants) {
      if (family === 'vit' && v.extra.tieEmbeddings) continue
      it(`${family} ${v.name}`, async () => {
        const src = base(family, v.extra)
        const sSpec = parseSpec(src)
        const tgtRaw = {
          ...src,
          ...v.to,
          normEps:
            sSpec.normEps * ((Math.floor((v.to.dModel as number) / 12) * 12) / (v.to.dModel as number)),
        }
        const before = tf.memory().numTensors
        const { diff, scale, result, source } = await growAndDiff(src, tgtRaw)
        expect(scale).toBeGreaterThan(0.1)
        expect(diff / scale).toBeLessThan(1e-5)
        expect(diff).toBeLessThan(1e-4)
        expect(result.model.spec.dModel).toBe(v.to.dModel)
        dispose(result.model)
        dispose(source)
        expect(tf.memory().numTensors).toBeLessThanOrEqual(before)
      })
    }
})

describe('lemon: more architectures', () => {
  const cases: { name: string; src: Record<string, unknown>; to: Record<string, unknown> }[] = [
    {
      name: 'decoder rotary + GQA (kv 2, 4 heads -> 10 heads), rmsnorm swiglu, 16 -> 40, L2 -> 4',
      src: {
        ...base('decoder'),
        dModel: 16,
        nHeads: 4,
        nKVHeads: 2,
        positional: 'rotary',
        norm: 'rmsnorm',
        activation: 'swiglu',
        bias: false,
      },
      to: { dModel: 40, nHeads: 10, nKVHeads: 2, nLayers: 4, dFF: 31 },
    },
    {
      name: 'decoder GQA grows key/value heads too (2 -> 4 kv, 4 -> 8 heads)',
      src: { ...base('decoder'), dModel: 16, nHeads: 4, nKVHeads: 2 },
      to: { dModel: 32, nHeads: 8, nKVHeads: 4, nLayers: 3 },
    },
    {
      name: 'encoder masked-LM head, layernorm post, 12 -> 24',
      src: { ...base('encoder'), normPlacement: 'post', mlmHead: true },
      to: { dModel: 24, nHeads: 5, dFF: 33 },
    },
    {
      name: 'encoder masked-LM head, rmsnorm pre, 12 -> 19 (indivisible), L2 -> 3',
      src: { ...base('encoder'), norm: 'rmsnorm', mlmHead: true },
      to: { dModel: 19, nHeads: 4, nLayers: 3 },
    },
    {
      name: 'decoder untied without bias, vocabulary and positions grow, heads only',
      src: { ...base('decoder'), tieEmbeddings: false, bias: false },
      to: { vocabSize: 30, maxSeqLen: 12, nHeads: 4 },
    },
    {
      name: 'decoder tied, vocabulary grows, width 12 -> 16',
      src: base('decoder'),
      to: { vocabSize: 29, dModel: 16 },
    },
    {
      name: 'vit pre layernorm, 12 -> 96 ... 12 -> 100 (k = 8, r = 4), L2 -> 8 (two steps)',
      src: base('vit'),
      to: { dModel: 100, nHeads: 7, dFF: 45, nLayers: 8 },
    },
  ]
  cases.push({
    name: 'decoder with a mixture-of-experts layer (3 experts, top-2), 12 -> 20, L2 -> 4',
    src: { ...base('decoder'), moe: { experts: 3, topK: 2, layers: [1] } },
    to: { dModel: 20, nHeads: 5, nLayers: 4, dFF: 31, moe: { experts: 3, topK: 2, layers: [2, 3] } },
  })
  for (const c of cases)
    it(c.name, async () => {
      const sSpec = parseSpec(c.src)
      const D2 = (c.to.dModel as number | undefined) ?? sSpec.dModel
      const eps = sSpec.normEps * ((Math.floor(D2 / sSpec.dModel) * sSpec.dModel) / D2)
      const before = tf.memory().numTensors
      const { diff, scale, result, source } = await growAndDiff(c.src, { ...c.src, ...c.to, normEps: eps })
      expect(scale).toBeGreaterThan(0.1)
      expect(diff / scale).toBeLessThan(1e-5)
      expect(diff).toBeLessThan(1e-4)
      dispose(result.model)
      dispose(source)
      expect(tf.memory().numTensors).toBe(before)
    })

  it('without the eps correction an indivisible width would not be exact (the test can fail)', async () => {
    const src = { ...base('decoder'), norm: 'rmsnorm' }
    const { result, source } = await growAndDiff(src, { ...src, dModel: 20, nHeads: 5 })
    expect(result.model.spec.normEps).toBeCloseTo(1e-5 * 0.6, 12)
    const wrong = { spec: { ...result.model.spec, normEps: 1e-5 }, params: result.model.params }
    // tiny random models have stream variance ~1e-3, so eps matters at the 1e-4 level
    expect(maxAbsLogitDiff(source, wrong, { seqLen: 6 })).toBeGreaterThan(1e-6)
    dispose(result.model)
    dispose(source)
  })
})

describe('lemon: report, schedule, determinism', () => {
  const sSpec = parseSpec(base('decoder'))
  const tSpec = parseSpec({ ...base('decoder'), dModel: 24, nHeads: 6, nLayers: 3, dFF: 30 })
  it('verifies by default on small models, counts growth FLOPs and returns the schedule', async () => {
    const source = initModel(sSpec, 3)
    const c = ctx(5)
    const before = tf.memory().numTensors
    const r = await lemon.grow(source, tSpec, c, opts())
    expect(r.report.maxAbsLogitDiff).not.toBeNull()
    expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
    expect(r.report.functionPreserving).toBe(true)
    expect(r.report.growthFlops).toBeGreaterThan(0)
    expect(c.flops.breakdown().growth).toBe(r.report.growthFlops)
    expect(r.report.details.layerOrigins).toEqual(['0', '1', 'new(1)'])
    expect(r.schedule).toMatchObject({ kind: 'cosine', peakLrScale: 1, minLrRatio: 0.1, decayFraction: 0.5 })
    expect(Object.keys(r.model.params).length).toBe(paramTable(tSpec).length)
    for (const p of paramTable(tSpec)) expect(r.model.params[p.name].shape).toEqual(p.shape)
    expect(tf.tidy(() => r.model.params['layers.2.attn.o.weight'].abs().max().dataSync()[0])).toBe(0)
    dispose(r.model)
    expect(tf.memory().numTensors).toBe(before)
    const never = await lemon.grow(source, tSpec, ctx(5), opts({ verify: 'never' }))
    expect(never.report.maxAbsLogitDiff).toBeNull()
    dispose(never.model)
    dispose(source)
  })
  it('is deterministic under a seed and the free parameters depend on it', async () => {
    const source = initModel(sSpec, 3)
    const a = await lemon.grow(source, tSpec, ctx(11), opts({ verify: 'never' }))
    const b = await lemon.grow(source, tSpec, ctx(11), opts({ verify: 'never' }))
    const c = await lemon.grow(source, tSpec, ctx(12), opts({ verify: 'never' }))
    const name = 'layers.0.attn.q.weight'
    for (const k of Object.keys(a.model.params))
      expect(Array.from(a.model.params[k].dataSync())).toEqual(Array.from(b.model.params[k].dataSync()))
    expect(Array.from(a.model.params[name].dataSync())).not.toEqual(
      Array.from(c.model.params[name].dataSync()),
    )
    for (const m of [a, b, c]) dispose(m.model)
    dispose(source)
  })
  it('noiseStd 0 gives the plain fan-in split W/k', async () => {
    const source = initModel(sSpec, 3)
    const r = await lemon.grow(source, tSpec, ctx(1), opts({ noiseStd: 0, verify: 'never' }))
    const w = source.params['layers.0.mlp.fc1.weight'].arraySync() as number[][]
    const g = r.model.params['layers.0.mlp.fc1.weight'].arraySync() as number[][]
    // row 12 + 3 is the second replica of source row 3; column 20 + 4 copies hidden unit 4
    expect(g[15][24]).toBeCloseTo(w[3][4] / 2, 7)
    expect(g[3][4]).toBeCloseTo(w[3][4] / 2, 7)
    dispose(r.model)
    dispose(source)
  })
})

describe('lemon: random specs (seeded)', () => {
  const rng = new SeededRandom(2024)
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]
  for (let i = 0; i < 80; i++) {
    const family = pick(['decoder', 'encoder', 'vit'] as const)
    const norm = pick(['layernorm', 'rmsnorm'] as const)
    const placement = pick(['pre', 'post'] as const)
    const hd = pick([2, 4])
    const kv = pick([1, 2])
    const g = pick([1, 2])
    const H1 = kv * g
    const D1 = pick([6, 8, 10])
    const src: Record<string, unknown> = {
      ...base(family),
      norm,
      normPlacement: placement,
      activation: pick(['gelu', 'gelu_tanh', 'relu', 'swiglu'] as const),
      bias: rng.uniform() < 0.5,
      dModel: D1,
      nHeads: H1,
      headDim: hd,
      dFF: pick([5, 8, 12]),
      nLayers: pick([1, 2, 3]),
      ...(family === 'vit' ? {} : { tieEmbeddings: rng.uniform() < 0.5 }),
      ...(family === 'decoder' && rng.uniform() < 0.5 ? { positional: 'rotary', nKVHeads: kv } : {}),
    }
    // post-norm LayerNorm: multiples only; post-norm: no depth growth
    const divisible = placement === 'post' && norm === 'layernorm'
    const D2 = divisible ? D1 * pick([1, 2, 3]) : D1 + pick([0, 1, 3, D1, D1 + 5, 2 * D1 + 1])
    const g2 = g * pick([1, 2])
    const to = {
      dModel: D2,
      nHeads: (src.nKVHeads === undefined ? H1 : kv) * g2 * (src.nKVHeads === undefined ? pick([1, 2]) : 1),
      dFF: (src.dFF as number) + pick([0, 1, 7]),
      nLayers: placement === 'post' ? src.nLayers : (src.nLayers as number) * pick([1, 2, 3]) + pick([0, 1]),
    }
    it(`#${i} ${family} ${norm} ${placement} ${src.activation} bias=${src.bias} tie=${src.tieEmbeddings} ${src.positional ?? 'learned'} kv=${src.nKVHeads ?? '-'} d${D1}->${D2} h${H1}->${to.nHeads} ff${src.dFF}->${to.dFF} L${src.nLayers}->${to.nLayers}`, async () => {
      const sSpec = parseSpec(src)
      const eps = sSpec.normEps * ((Math.floor(D2 / D1) * D1) / D2)
      const before = tf.memory().numTensors
      const { diff, scale, result, source } = await growAndDiff(src, { ...src, ...to, normEps: eps }, 100 + i)
      expect(scale).toBeGreaterThan(0.1)
      expect(diff / scale).toBeLessThan(1e-5)
      expect(diff).toBeLessThan(1e-4)
      dispose(result.model)
      dispose(source)
      expect(tf.memory().numTensors).toBe(before)
    })
  }
})

describe('lemon: float64 reference forward', () => {
  const refParams = (m: Model): RefParams =>
    Object.fromEntries(
      Object.entries(m.params).map(([k, t]) => [k, { shape: t.shape, data: t.dataSync() as Float32Array }]),
    )
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    [
      'decoder pre layernorm tied 12 -> 20, h3 -> 5, L2 -> 4',
      base('decoder'),
      { dModel: 20, nHeads: 5, nLayers: 4, dFF: 27 },
    ],
    [
      'encoder post rmsnorm untied 12 -> 30',
      base('encoder', { normPlacement: 'post', norm: 'rmsnorm', tieEmbeddings: false }),
      { dModel: 30, nHeads: 4 },
    ],
    [
      'vit pre rmsnorm swiglu 12 -> 17, L2 -> 3',
      base('vit', { norm: 'rmsnorm', activation: 'swiglu' }),
      { dModel: 17, nLayers: 3 },
    ],
  ]
  for (const [name, src, to] of cases)
    it(name, async () => {
      const sSpec = parseSpec(src)
      const { result, source } = await growAndDiff(src, { ...src, ...to })
      const rng = new SeededRandom(5)
      const input =
        sSpec.family === 'vit'
          ? Array.from({ length: 8 }, () => Array.from({ length: 8 }, () => Array.from(rng.normals(3))))
          : Array.from({ length: 6 }, () => rng.int(sSpec.vocabSize))
      const a = referenceForward(sSpec, refParams(source), input).flat()
      const b = referenceForward(result.model.spec, refParams(result.model), input).flat()
      const scale = Math.max(...a.map(Math.abs))
      const diff = Math.max(...a.map((v, i) => Math.abs(v - b[i])))
      expect(scale).toBeGreaterThan(0.1)
      expect(diff / scale).toBeLessThan(1e-6)
      dispose(result.model)
      dispose(source)
    })
})

describe('lemon: shapes and plans', () => {
  it('depth schedule doubles at most per step', () => {
    expect(depthSchedule(2, 4).slots).toEqual([
      { src: 0, fresh: false },
      { src: 0, fresh: true },
      { src: 1, fresh: false },
      { src: 1, fresh: true },
    ])
    expect(depthSchedule(2, 7).steps).toBe(2)
    expect(depthSchedule(3, 3).steps).toBe(0)
  })
  it('query head map is circular', () => {
    const s = parseSpec(base('decoder'))
    const t = parseSpec({ ...base('decoder'), dModel: 24, nHeads: 7 })
    expect([...queryHeadMap(s, t)]).toEqual([0, 1, 2, 0, 1, 2, 0])
  })
})

describe('lemon: refusals', () => {
  const refusals: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
    ['post-norm depth', { normPlacement: 'post' }, { nLayers: 3 }, /post-norm model cannot be lossless/],
    [
      'post-norm layernorm indivisible',
      { normPlacement: 'post' },
      { dModel: 20, normEps: 6e-6 },
      /multiple of 12/,
    ],
    ['mlm head layernorm indivisible', { mlmHead: true }, { dModel: 20, normEps: 6e-6 }, /masked-LM head/],
    ['head dimension change', {}, { dModel: 24, headDim: 8 }, /keeps the head dimension/],
    ['shrink', {}, { dFF: 10 }, /dFF 10 is smaller/],
    ['architecture change', {}, { activation: 'relu' }, /activation "relu" differs/],
    ['dense to moe', {}, { moe: { experts: 2, layers: [0] } }, /upcycle/],
    [
      'moe layers not at their grown positions',
      { moe: { experts: 2, layers: [1] } },
      { nLayers: 4, moe: { experts: 2, layers: [1, 3] } },
      /moe.layers \[1,3\] must be \[2,3\]/,
    ],
    [
      'moe expert count change',
      { moe: { experts: 2, layers: [1] } },
      { moe: { experts: 4, layers: [1] } },
      /LEMON keeps experts/,
    ],
    ['wrong eps', {}, { dModel: 20, normEps: 1e-5 * 0.5 }, /normEps .* eps·k·D1\/D2/],
    [
      'gqa fewer query heads per kv head',
      { nKVHeads: 1 },
      { nKVHeads: 3, nHeads: 3 },
      /query heads per key\/value head/,
    ],
  ]
  for (const [name, extra, to, re] of refusals)
    it(name, () => {
      const src = base('encoder', extra)
      const s = parseSpec(src)
      const t = parseSpec({ ...src, ...to })
      const run = () => lemon.check(s, t, opts())
      expect(run).toThrow(GrowthError)
      expect(run).toThrow(re)
    })
  it('grow refuses too (not only check)', async () => {
    const s = parseSpec(base('encoder', { normPlacement: 'post' }))
    const source = initModel(s, 1)
    const before = tf.memory().numTensors
    await expect(lemon.grow(source, { ...s, nLayers: 4 }, ctx(), opts())).rejects.toThrow(GrowthError)
    expect(tf.memory().numTensors).toBe(before)
    dispose(source)
  })
  it('the indivisible eps may be given already corrected or as the source value', () => {
    const s = parseSpec(base('decoder'))
    expect(() => lemon.check(s, parseSpec({ ...base('decoder'), dModel: 20 }), opts())).not.toThrow()
    expect(() =>
      lemon.check(s, parseSpec({ ...base('decoder'), dModel: 20, normEps: 6e-6 }), opts()),
    ).not.toThrow()
  })
  it('options are validated and errors name the option', () => {
    expect(() => opts({ noiseStd: -1 })).toThrow(/option noiseStd/)
    expect(() => opts({ verify: 'sometimes' })).toThrow(/option verify/)
    expect(() => opts({ bogus: 1 })).toThrow(/bogus/)
  })
})

describe('lemon: exports', () => {
  it('default and named', () => {
    expect(lemonDefault).toBe(lemon)
  })
})

export type { TransformerSpec }
