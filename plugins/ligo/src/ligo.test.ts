import {
  type AxisRole,
  type Batch,
  computeLoss,
  forward,
  GrowthError,
  initModel,
  type Model,
  paramTable,
  parseSpec,
  SeededRandom,
  type TransformerSpec,
  validateParams,
} from '@sprout/core'
import {
  type BatchSource,
  disposeBatch,
  markovBatches,
  pretrainedModel,
  fitContext as testContext,
} from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import ligo, { createLigo, type LigoOptions, ligoOptions } from './index.js'

const base = {
  family: 'decoder',
  vocabSize: 16,
  maxSeqLen: 8,
  norm: 'layernorm',
  normPlacement: 'pre',
  activation: 'gelu',
} as const
const small = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16 })
const big = parseSpec({ ...base, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32 })

const opts = (o: Partial<LigoOptions>): LigoOptions => ligoOptions.parse(o) as LigoOptions
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

/** Axis size of a role in a spec (vocab/position/... are never grown). */
function axisSize(spec: TransformerSpec, role: AxisRole, n: number): number {
  if (role === 'residual') return spec.dModel
  if (role === 'attn') return spec.nHeads * spec.headDim
  if (role === 'ffn') return spec.dFF
  return n
}

/**
 * Independent reference: Net2Net-style duplication without rescaling (index i of a grown axis
 * reads source index i mod n1), or zero padding of new indices ('pad'); depth by a layer map.
 */
function reference(
  source: Model,
  target: TransformerSpec,
  mode: 'dup' | 'pad',
  layerOf: (i: number) => number,
) {
  const out: Record<string, Float32Array> = {}
  for (const info of paramTable(target)) {
    const srcName =
      info.layer === null
        ? info.name
        : info.name.replace(`layers.${info.layer}.`, `layers.${layerOf(info.layer)}.`)
    const src = source.params[srcName]
    const data = src.dataSync()
    const sShape = src.shape
    const n1 = info.axes.map((r, k) => axisSize(source.spec, r, sShape[k]))
    const vals = new Float32Array(info.shape.reduce((a, b) => a * b, 1))
    const idx = (i: number, k: number) => (mode === 'dup' ? i % n1[k] : i < n1[k] ? i : -1)
    if (info.shape.length === 1) {
      for (let i = 0; i < info.shape[0]; i++) {
        const s = idx(i, 0)
        vals[i] = s < 0 ? 0 : data[s]
      }
    } else {
      const [a, b] = info.shape
      for (let i = 0; i < a; i++)
        for (let j = 0; j < b; j++) {
          const si = idx(i, 0)
          const sj = idx(j, 1)
          vals[i * b + j] = si < 0 || sj < 0 ? 0 : data[si * sShape[1]! + sj]
        }
    }
    out[info.name] = vals
  }
  return out
}

function expectMatches(model: Model, ref: Record<string, Float32Array>) {
  validateParams(model.spec, model.params)
  for (const [name, vals] of Object.entries(ref)) {
    const got = model.params[name].dataSync()
    let max = 0
    for (let i = 0; i < vals.length; i++) max = Math.max(max, Math.abs(got[i] - vals[i]))
    expect(max, name).toBeLessThan(1e-6)
  }
}

const source = initModel(small, 7)
afterAll(() => dispose(source))

describe('ligo initialisation reproduces the fixed methods', () => {
  it('duplicate width + stack depth = Net2Net-style copies stacked [0,1,0,1]', async () => {
    const { model } = await ligo.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'stack', newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (i) => i % 2),
    )
    dispose(model)
  })
  it('duplicate width + interpolate depth = copies in order [0,0,1,1]', async () => {
    const { model } = await ligo.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'interpolate', newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (i) => Math.floor(i / 2)),
    )
    dispose(model)
  })
  it('identity init ([I; 0]) zero-pads every grown axis, in both forms', async () => {
    for (const form of ['kronecker', 'block'] as const) {
      const { model } = await ligo.grow(
        source,
        big,
        testContext(1),
        opts({ steps: 0, initNoise: 0, form, widthInit: 'identity', newLayers: 'copy' }),
      )
      expectMatches(
        model,
        reference(source, big, 'pad', (i) => i % 2),
      )
      dispose(model)
    }
  })
  it('depth only: stacking the unchanged-width source, with only depth parameters', async () => {
    const deep = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 2, dFF: 16 })
    const op = createLigo(
      small,
      deep,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0 },
      1,
    )
    expect(Object.keys(op.variables).every((k) => k.startsWith('depth.'))).toBe(true)
    op.dispose()
    const { model } = await ligo.grow(
      source,
      deep,
      testContext(1),
      opts({ steps: 0, initNoise: 0, newLayers: 'copy' }),
    )
    expectMatches(
      model,
      reference(source, deep, 'dup', (i) => i % 2),
    )
    dispose(model)
  })
  it('width only: no depth parameters, same layer count', async () => {
    const wide = parseSpec({ ...base, dModel: 16, nLayers: 2, nHeads: 4, dFF: 32 })
    const op = createLigo(
      small,
      wide,
      null,
      { form: 'block', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0.1 },
      1,
    )
    const keys = Object.keys(op.variables)
    expect(keys.some((k) => k.startsWith('depth.'))).toBe(false)
    // block form trains only the new rows C of [I; C]: (16-8)x8 for E, (16-8)x8 per q/k/v, (32-16)x16 per fc1
    expect(op.parameterCount).toBe(8 * 8 + 2 * (3 * 8 * 8 + 16 * 16))
    op.dispose()
  })
})

describe('ligo operator parameters', () => {
  it('kronecker parameter count and materialisation FLOPs match a hand count', () => {
    const op = createLigo(
      small,
      big,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0 },
      1,
    )
    // E 16x8; per source layer (2): B_Q, B_K, B_V 16x8 and B_fc1 32x16; depth: 9 modules minus gate = 8 of 4x2
    expect(op.parameterCount).toBe(128 + 2 * (3 * 128 + 512) + 8 * 8)
    // Width, per source layer: q,k,v [8,8]->[16,16]: W·Bᵀ 2·8·8·16 + E·(.) 2·16·8·16 = 6144 each (+ bias 2·16·8)
    // o same 6144 + bias(residual) 256; fc1 [8,16]->[16,32]: 2·8·16·32 + 2·16·8·32 = 16384, bias 2·32·16 = 1024;
    // fc2 [16,8]->[32,16]: 2·16·8·16 + 2·32·16·16 = 20480, bias 256; norms: 2 x (scale+shift) x 256.
    const perLayerWidth = 3 * (6144 + 256) + 6144 + 256 + 16384 + 1024 + 20480 + 256 + 4 * 256
    // Non-layer: tokens [16,8]->[16,16] 2·16·8·16 = 4096, positions [8,8]->[8,16] 2048, final norm 2x256.
    const width = 2 * perLayerWidth + 4096 + 2048 + 512
    // Depth: 2·L1 FLOPs per target-layer entry; per target layer 4·(16·16+16) + 2·16·32 + 32 + 16 + 4·16 entries.
    const perTarget = 4 * (256 + 16) + 512 + 32 + 512 + 16 + 4 * 16
    expect(op.materialiseFlops).toBe(width + 4 * perTarget * 2 * 2)
    op.dispose()
  })

  it('gradients reach every operator parameter and match finite differences', () => {
    const op = createLigo(
      small,
      big,
      null,
      { form: 'kronecker', widthInit: 'identity', depthInit: 'stack', newLayers: 'copy', initNoise: 0.2 },
      3,
    )
    const stream = markovBatches(big, 2, 8, 5)
    const batch = stream.next()
    const lossOf = () =>
      tf.tidy(
        () => computeLoss({ spec: big, params: op.materialise(source.params) }, batch).loss.dataSync()[0],
      )
    const { grads, value } = tf.variableGrads(
      () => computeLoss({ spec: big, params: op.materialise(source.params) }, batch).loss,
      Object.values(op.variables),
    )
    value.dispose()
    const rng = new SeededRandom(9)
    for (const [name, v] of Object.entries(op.variables)) {
      const g = grads[v.name].dataSync()
      let maxAbs = 0
      let arg = 0
      for (let i = 0; i < g.length; i++)
        if (Math.abs(g[i]) > maxAbs) {
          maxAbs = Math.abs(g[i])
          arg = i
        }
      expect(maxAbs, `gradient of ${name}`).toBeGreaterThan(1e-6)
      const nonzero = g.filter((x) => Math.abs(x) > 1e-9).length
      expect(nonzero / g.length, `${name}: share of entries with gradient`).toBeGreaterThan(0.95)
      // central differences at the largest entry and at a random one
      for (const at of [arg, rng.int(g.length)]) {
        const eps = 1e-2
        const orig = v.dataSync().slice()
        const bump = (delta: number) => {
          const d = orig.slice()
          d[at] += delta
          v.assign(tf.tensor(d, v.shape))
          return lossOf()
        }
        const fd = (bump(eps) - bump(-eps)) / (2 * eps)
        v.assign(tf.tensor(orig, v.shape))
        expect(Math.abs(fd - g[at]), `${name}[${at}] fd ${fd} vs ${g[at]}`).toBeLessThan(
          2e-3 + 0.05 * Math.abs(g[at]),
        )
      }
    }
    tf.dispose(Object.values(grads))
    disposeBatch(batch)
    op.dispose()
  })
})

/** Pretrains the tiny source on the Markov data so growth has something to transfer. */
function pretrained(spec: TransformerSpec): Promise<Model> {
  return pretrainedModel(spec, markovBatches(spec, 8, 8, 99), 60, 1e-2)
}

function heldOutLoss(model: Model, batches: Batch[]): number {
  let sum = 0
  for (const b of batches) sum += tf.tidy(() => computeLoss(model, b).ce.dataSync()[0])
  return sum / batches.length
}

describe('ligo fitting', () => {
  it('lowers held-out target loss vs the initialisation, reports FLOPs, leaks nothing, is deterministic', async () => {
    const src = await pretrained(small)
    const held = Array.from(
      { length: 4 },
      (
        (s) => () =>
          s.next()
      )(markovBatches(big, 8, 8, 4242)),
    )
    const before = tf.memory().numTensors
    const o = opts({ steps: 40, learningRate: 1e-2 })
    const init = await ligo.grow(src, big, testContext(5), { ...o, steps: 0 })
    const ctx = testContext(5, markovBatches(big, 8, 8, 1))
    const fitted = await ligo.grow(src, big, ctx, o)
    const l0 = heldOutLoss(init.model, held)
    const l1 = heldOutLoss(fitted.model, held)
    expect(l1).toBeLessThan(l0 - 0.05)
    const r = fitted.report
    expect(r.steps).toBe(40)
    const perStep = r.details.fitFlopsPerStep as number
    expect(r.details.fitFlops).toBe(40 * perStep)
    expect(r.growthFlops).toBe(40 * perStep + (r.details.materialiseFlops as number))
    expect((r.details.fitLosses as number[]).length).toBe(40)
    // determinism: the same seed gives the same weights
    const again = await ligo.grow(src, big, testContext(5, markovBatches(big, 8, 8, 1)), o)
    for (const k of Object.keys(fitted.model.params))
      expect(Array.from(again.model.params[k].dataSync())).toEqual(
        Array.from(fitted.model.params[k].dataSync()),
      )
    dispose(init.model)
    dispose(fitted.model)
    dispose(again.model)
    expect(tf.memory().numTensors).toBe(before)
    for (const b of held) disposeBatch(b)
    dispose(src)
  })
})

describe('ligo across families and architectures', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    [
      'encoder post-norm rmsnorm swiglu',
      {
        family: 'encoder',
        vocabSize: 12,
        maxSeqLen: 6,
        norm: 'rmsnorm',
        normPlacement: 'post',
        activation: 'swiglu',
      },
      {},
    ],
    [
      'encoder with masked-LM head, no bias',
      { family: 'encoder', vocabSize: 12, maxSeqLen: 6, mlmHead: true, bias: false },
      {},
    ],
    [
      'decoder untied rotary',
      { family: 'decoder', vocabSize: 12, maxSeqLen: 6, tieEmbeddings: false, positional: 'rotary' },
      {},
    ],
    ['vit', { family: 'vit', image: { size: 4, patch: 2, channels: 1, classes: 3 } }, {}],
  ]
  for (const [label, arch] of cases)
    it(`${label}: grows width and depth, fits, and runs`, async () => {
      const s = parseSpec({ ...arch, dModel: 8, nLayers: 1, nHeads: 2, dFF: 16 })
      const t = parseSpec({ ...arch, dModel: 12, nLayers: 2, nHeads: 3, dFF: 24 })
      const src = initModel(s, 2)
      const before = tf.memory().numTensors
      let stream: BatchSource
      if (s.family === 'vit') {
        const rng = new SeededRandom(3)
        stream = {
          batchSize: 2,
          seqLen: t.maxSeqLen,
          next: () => ({
            inputs: tf.tensor4d(rng.normals(2 * 16), [2, 4, 4, 1]),
            targets: tf.tensor1d([rng.int(3), rng.int(3)], 'int32'),
          }),
        }
      } else stream = markovBatches(t, 2, 6, 1)
      const { model, report } = await ligo.grow(src, t, testContext(1, stream), opts({ steps: 3 }))
      validateParams(t, model.params)
      expect(report.steps).toBe(3)
      const batch = stream.next() as Batch
      const logits = forward(model, batch.inputs)
      expect(logits.shape[logits.shape.length - 1]).toBe(s.family === 'vit' ? 3 : 12)
      expect(logits.dataSync().every((x) => Number.isFinite(x))).toBe(true)
      tf.dispose(logits)
      disposeBatch(batch)
      dispose(model)
      expect(tf.memory().numTensors).toBe(before)
      dispose(src)
    })
})

describe('ligo refusals', () => {
  it('needs data when fitting', async () => {
    await expect(ligo.grow(source, big, testContext(1), opts({}))).rejects.toThrow(/--data moby-dick/)
  })
  it('refuses mixture-of-experts, GQA, vocabulary growth and shrinking', () => {
    const moe = parseSpec({
      ...base,
      dModel: 16,
      nLayers: 4,
      nHeads: 4,
      dFF: 32,
      moe: { experts: 2, layers: [1] },
    })
    expect(() => ligo.check(small, moe, opts({}))).toThrow(/mixture-of-experts/)
    const gqa = parseSpec({ ...base, dModel: 16, nLayers: 4, nHeads: 4, dFF: 32, nKVHeads: 2 })
    const gqaSmall = parseSpec({ ...base, dModel: 8, nLayers: 2, nHeads: 2, dFF: 16, nKVHeads: 1 })
    expect(() => ligo.check(gqaSmall, { ...gqa, nKVHeads: 1 }, opts({}))).toThrow(GrowthError)
    expect(() => ligo.check(small, { ...big, vocabSize: 32 }, opts({}))).toThrow(/vocabulary/)
    expect(() => ligo.check(big, small, opts({}))).toThrow(/never shrinks/)
  })
  it('validates options by name', () => {
    expect(ligoOptions.safeParse({ form: 'tucker' }).success).toBe(false)
    expect(ligoOptions.safeParse({ steps: -1 }).success).toBe(false)
  })
})
