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
import { growthRefusal, orderOneModel } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import hypercloning, { addSymmetricNoise, type HypercloningOptions, tile } from './index.js'

const opts = (raw: Record<string, unknown> = {}): HypercloningOptions => parseOptions(hypercloning, raw)
const dispose = (m: Model) => tf.dispose(Object.values(m.params))
const values = (t: tf.Tensor) => Array.from(t.dataSync())

const source = orderOneModel

async function grow(src: Model, target: TransformerSpec, raw: Record<string, unknown> = {}, seed = 5) {
  hypercloning.check(src.spec, target, opts(raw))
  return hypercloning.grow(src, target, quietGrowthContext(seed), opts(raw))
}

const text = { vocabSize: 29, maxSeqLen: 12, nLayers: 2, dModel: 12, nHeads: 3, headDim: 4, dFF: 20 }
/** The paper's recipe: dModel, nHeads (and nKVHeads) and dFF all × n. */
function widened(s: TransformerSpec, n: number, extra: Record<string, unknown> = {}): TransformerSpec {
  const kv = s.nKVHeads === undefined ? {} : { nKVHeads: s.nKVHeads * n }
  return parseSpec({ ...s, dModel: s.dModel * n, nHeads: s.nHeads * n, dFF: s.dFF * n, ...kv, ...extra })
}

describe('tile and the symmetric noise', () => {
  it('tiles whole copies along each axis and scales', () => {
    expect(Array.from(tile(new Float32Array([1, 2, 3]), [3], [2]))).toEqual([1, 2, 3, 1, 2, 3])
    // [[1, 2], [3, 4]] tiled 2 × 3 times, halved (2 input copies).
    expect(Array.from(tile(new Float32Array([1, 2, 3, 4]), [2, 2], [2, 3], 0.5))).toEqual([
      0.5, 1, 0.5, 1, 0.5, 1, 1.5, 2, 1.5, 2, 1.5, 2, 0.5, 1, 0.5, 1, 0.5, 1, 1.5, 2, 1.5, 2, 1.5, 2,
    ])
  })

  it('adds ±N to pairs of input copies at the requested SNR; the sum over copies is unchanged', () => {
    const r = 4
    const k = 5
    const src = new Float32Array(r * k).map((_, i) => Math.sin(i + 1))
    for (const a of [2, 3, 4]) {
      const clean = tile(src, [r, k], [a, 2], 1 / a)
      const noisy = clean.slice()
      const rng = quietGrowthContext(9).random
      addSymmetricNoise(noisy, [a * r, 2 * k], [a, 2], 6, rng)
      const cols = 2 * k
      for (let ob = 0; ob < 2; ob++) {
        for (let i = 0; i < r; i++)
          for (let j = 0; j < k; j++) {
            let sum = 0
            for (let c = 0; c < a; c++) sum += noisy[(c * r + i) * cols + ob * k + j]
            expect(sum).toBeCloseTo(src[i * k + j], 6)
          }
        for (let p = 0; p + 1 < a; p += 2) {
          let signal = 0
          let power = 0
          for (let i = 0; i < r; i++)
            for (let j = 0; j < k; j++) {
              const at = (p * r + i) * cols + ob * k + j
              signal += clean[at] ** 2
              power += (noisy[at] - clean[at]) ** 2
              // The partner copy got exactly the opposite noise.
              expect(noisy[at + r * cols] - clean[at + r * cols]).toBeCloseTo(-(noisy[at] - clean[at]), 6)
            }
          expect(10 * Math.log10(signal / power)).toBeCloseTo(6, 3)
        }
        // An odd copy count leaves the last copy clean (it has no partner).
        if (a % 2 === 1)
          for (let i = 0; i < r; i++)
            for (let j = 0; j < k; j++) {
              const at = ((a - 1) * r + i) * cols + ob * k + j
              expect(noisy[at]).toBe(clean[at])
            }
      }
    }
  })
})

describe('hypercloning: exactly function-preserving', () => {
  const variants: [string, TransformerSpec, number][] = [
    [
      'GPT-2-like decoder (tied, pre-norm layernorm, gelu_tanh)',
      parseSpec({ family: 'decoder', ...text, activation: 'gelu_tanh' }),
      2,
    ],
    [
      'decoder post-norm relu, × 3',
      parseSpec({ family: 'decoder', ...text, normPlacement: 'post', activation: 'relu' }),
      3,
    ],
    [
      'LLaMA-like decoder (rmsnorm, swiglu, rotary, GQA, untied, no bias)',
      parseSpec({
        family: 'decoder',
        ...text,
        nHeads: 4,
        headDim: 4,
        nKVHeads: 2,
        dModel: 16,
        norm: 'rmsnorm',
        activation: 'swiglu',
        bias: false,
        positional: 'rotary',
        tieEmbeddings: false,
      }),
      2,
    ],
    [
      'decoder with MoE layers (fine-grained experts)',
      parseSpec({ family: 'decoder', ...text, moe: { experts: 4, topK: 2, layers: [1], expertDFF: 10 } }),
      2,
    ],
    [
      'BERT-like encoder (post-norm, masked-LM head)',
      parseSpec({ family: 'encoder', ...text, normPlacement: 'post', mlmHead: true }),
      2,
    ],
    [
      'ViT (pre-norm, gelu)',
      parseSpec({
        family: 'vit',
        nLayers: 2,
        dModel: 12,
        nHeads: 3,
        dFF: 20,
        image: { size: 8, patch: 4, channels: 3, classes: 5 },
      }),
      4,
    ],
  ]
  for (const [name, s, n] of variants)
    for (const noise of [undefined, 0, 10])
      it(`${name}: max |Δlogits| < 1e-4 ${noise === undefined ? 'with exact copies' : `with symmetric noise at ${noise} dB`}`, async () => {
        const src = source(s)
        const target = widened(s, n, s.moe ? { moe: { ...s.moe, expertDFF: s.moe.expertDFF! * n } } : {})
        const before = tf.memory().numTensors
        const r = await grow(src, target, noise === undefined ? {} : { noise })
        expect(r.model.spec).toEqual(target)
        expect(r.report.functionPreserving).toBe(true)
        expect(r.report.maxAbsLogitDiff!).toBeLessThan(1e-4)
        expect(r.report.details.factors).toEqual({ residual: n, attn: n, kv: n, ffn: n })
        // Independent of the report: other inputs, logits of order one or more.
        expect(maxAbsLogitDiff(src, r.model, { seed: 71, batchSize: 3 })).toBeLessThan(1e-4)
        const scale = tf.tidy(() => tf.max(tf.abs(forward(src, randomInputs(s, 2, 6, 1)))).dataSync()[0])
        expect(scale).toBeGreaterThan(0.5)
        // With noise the copies really differ (the first layer's attention query input copies).
        const q = r.model.params['layers.0.attn.q.weight'].arraySync() as number[][]
        const D = s.dModel
        const copiesDiffer = q.slice(0, D).some((row, i) => row.some((v, j) => v !== q[D + i][j]))
        expect(copiesDiffer).toBe(noise !== undefined)
        dispose(r.model)
        expect(tf.memory().numTensors).toBe(before)
        dispose(src)
      })

  it('tied embeddings: embeddings are tiled undivided and the norm before the tied projection is divided by n', async () => {
    const s = parseSpec({ family: 'decoder', ...text })
    const src = source(s)
    const r = await grow(src, widened(s, 2))
    expect(r.report.details.tiedOutputNormScaled).toBe('norm')
    const E = src.params['embed.tokens'].arraySync() as number[][]
    expect(r.model.params['embed.tokens'].arraySync()).toEqual(E.map((row) => [...row, ...row]))
    const g = values(src.params['norm.weight'])
    const got = values(r.model.params['norm.weight'])
    got.forEach((v, i) => {
      expect(v).toBeCloseTo(g[i % g.length] / 2, 6)
    })
    // Without that division the logits double: the test can fail.
    const undone: Model = { spec: r.model.spec, params: { ...r.model.params } }
    const plain = tf.tensor(tile(new Float32Array(g), [g.length], [2]))
    undone.params['norm.weight'] = plain
    const bias = tf.tensor(tile(src.params['norm.bias'].dataSync() as Float32Array, [g.length], [2]))
    undone.params['norm.bias'] = bias
    expect(maxAbsLogitDiff(src, undone, { seed: 71 })).toBeGreaterThan(0.5)
    tf.dispose([plain, bias])
    dispose(r.model)
    dispose(src)
  })

  it('grows each role by its own integer factor (dModel × 2, heads × 3, FFN × 1)', async () => {
    const s = parseSpec({ family: 'decoder', ...text })
    const src = source(s)
    const t = parseSpec({ ...s, dModel: 24, nHeads: 9 })
    const r = await grow(src, t, { noise: 3 })
    expect(r.report.details.factors).toEqual({ residual: 2, attn: 3, kv: 3, ffn: 1 })
    expect(maxAbsLogitDiff(src, r.model, { seed: 71 })).toBeLessThan(1e-4)
    dispose(r.model)
    dispose(src)
  })

  it('the noise is seeded: the same seed gives the same weights, another seed others', async () => {
    const s = parseSpec({ family: 'decoder', ...text })
    const src = source(s)
    const t = widened(s, 2)
    const a = await grow(src, t, { noise: 10, verify: 'never' }, 1)
    const b = await grow(src, t, { noise: 10, verify: 'never' }, 1)
    const c = await grow(src, t, { noise: 10, verify: 'never' }, 2)
    const name = 'layers.1.mlp.fc2.weight'
    expect(values(b.model.params[name])).toEqual(values(a.model.params[name]))
    expect(values(c.model.params[name])).not.toEqual(values(a.model.params[name]))
    for (const m of [a, b, c]) dispose(m.model)
    dispose(src)
  })
})

describe('hypercloning: refusals', () => {
  const s = parseSpec({ family: 'decoder', ...text })
  const gqa = parseSpec({ ...s, nHeads: 4, nKVHeads: 2 })
  const moe = parseSpec({ ...s, moe: { experts: 4, layers: [1] } })
  const cases: [string, TransformerSpec, TransformerSpec, RegExp][] = [
    [
      'a non-integer width ratio',
      s,
      parseSpec({ ...s, dModel: 18, nHeads: 3 }),
      /dModel 18 is not an integer multiple of the source's 12.*use lemon for non-integer ratios/,
    ],
    [
      'a non-integer FFN ratio',
      s,
      parseSpec({ ...s, dFF: 30 }),
      /dFF 30 is not an integer multiple.*use lemon/,
    ],
    ['a smaller target', widened(s, 2), s, /smaller than the source's/],
    ['depth growth', s, parseSpec({ ...s, nLayers: 4 }), /nLayers .* grow depth with stack or lemon/],
    ['a headDim change', s, parseSpec({ ...s, headDim: 8 }), /headDim.*keeps headDim/],
    [
      'GQA with kv heads not grown like the query heads',
      gqa,
      parseSpec({ ...gqa, dModel: 24, nHeads: 8, dFF: 40 }),
      /key\/value heads 2 must be the source's 2 × 2 .*set nKVHeads to 4/,
    ],
    ['a vocabulary change', s, parseSpec({ ...s, vocabSize: 40 }), /vocabSize.*grow it with lemon/],
    [
      'untying the head',
      s,
      parseSpec({ ...widened(s, 2), tieEmbeddings: false }),
      /untying is not supported: keep tieEmbeddings true/,
    ],
    [
      'a change of expert count',
      moe,
      parseSpec({ ...widened(moe, 2), moe: { experts: 8, layers: [1] } }),
      /HyperCloning keeps experts, topK, layers/,
    ],
    ['adding MoE layers', s, widened(moe, 2), /turn MLPs into experts with upcycle/],
    [
      'a different activation',
      s,
      parseSpec({ ...widened(s, 2), activation: 'relu' }),
      /activation.*keeps the architecture/,
    ],
  ]
  for (const [name, from, to, message] of cases)
    it(`refuses ${name} with a GrowthError naming the fix`, () => {
      const refusal = growthRefusal(() => hypercloning.check(from, to, opts()))
      expect(refusal).toMatch(message)
      expect(refusal).toMatch(/^hypercloning: /)
    })

  it('refuses malformed options, naming the option', () => {
    expect(() => opts({ noise: 'loud' })).toThrow(/option noise/)
    expect(() => opts({ snr: 10 })).toThrow(/unknown field\(s\) "snr"/)
    expect(() => opts({ verify: 'sometimes' })).toThrow(/option verify/)
  })
})
