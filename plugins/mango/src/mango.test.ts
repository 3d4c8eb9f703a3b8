import {
  type Batch,
  computeLoss,
  forward,
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
import mango, { createMango, type MangoOptions, mangoOptions } from './index.js'

const base = {
  family: 'decoder',
  vocabSize: 16,
  maxSeqLen: 8,
  norm: 'layernorm',
  normPlacement: 'pre',
  activation: 'gelu',
} as const
const small = parseSpec({ ...base, dModel: 4, nLayers: 2, nHeads: 2, dFF: 8 })
const big = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 4, dFF: 16 })
const opts = (o: Partial<MangoOptions>): MangoOptions => mangoOptions.parse(o) as MangoOptions
const dispose = (m: Model) => tf.dispose(Object.values(m.params))

/**
 * Independent reference for the fixed initialisation: every dModel-wide chunk of a target
 * tensor copies chunk (j mod n1) of the same source tensor; inside a chunk, index x reads
 * x mod D1 ('dup') or x when x < D1, else 0 ('pad'); target layer l reads source layer layerOf(l).
 */
function reference(
  source: Model,
  target: TransformerSpec,
  mode: 'dup' | 'pad',
  layerOf: (l: number) => number,
) {
  const D1 = source.spec.dModel
  const D2 = target.dModel
  const out: Record<string, Float32Array> = {}
  // map a target index along an axis to a source index (or -1 for zero)
  const mapAxis = (x: number, role: string, n1: number) => {
    if (role !== 'residual' && role !== 'attn' && role !== 'ffn') return x
    const chunks1 = n1 / D1
    const chunk = Math.floor(x / D2) % chunks1
    const inner = x % D2
    const m = mode === 'dup' ? inner % D1 : inner < D1 ? inner : -1
    return m < 0 ? -1 : chunk * D1 + m
  }
  for (const info of paramTable(target)) {
    const name =
      info.layer === null
        ? info.name
        : info.name.replace(`layers.${info.layer}.`, `layers.${layerOf(info.layer)}.`)
    const src = source.params[name]
    const data = src.dataSync()
    const vals = new Float32Array(info.shape.reduce((a, b) => a * b, 1))
    if (info.shape.length === 1) {
      for (let i = 0; i < info.shape[0]; i++) {
        const s = mapAxis(i, info.axes[0], src.shape[0])
        vals[i] = s < 0 ? 0 : data[s]
      }
    } else {
      const [a, b] = info.shape
      for (let i = 0; i < a; i++)
        for (let j = 0; j < b; j++) {
          const si = mapAxis(i, info.axes[0], src.shape[0])
          const sj = mapAxis(j, info.axes[1], src.shape[1]!)
          vals[i * b + j] = si < 0 || sj < 0 ? 0 : data[si * src.shape[1]! + sj]
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
    expect(max, name).toBeLessThan(1e-5)
  }
}

const source = initModel(small, 7)
afterAll(() => dispose(source))

describe('mango initialisation reproduces the fixed methods', () => {
  it('duplicate + stack (rank 4, no noise) = blockwise Net2Net copies stacked [0,1,0,1]', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, initNoise: 0, widthInit: 'duplicate', depthInit: 'stack' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (l) => l % 2),
    )
    dispose(model)
  })
  it('identity + interpolate (rank 2) = zero-padded blocks in order [0,0,1,1]', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, rank: 2, initNoise: 0, widthInit: 'identity', depthInit: 'interpolate' }),
    )
    expectMatches(
      model,
      reference(source, big, 'pad', (l) => Math.floor(l / 2)),
    )
    dispose(model)
  })
  it('per-bond ranks [2, 3, 1, 2] (no noise) = the same fixed method', async () => {
    const { model } = await mango.grow(
      source,
      big,
      testContext(1),
      opts({ steps: 0, rank: [2, 3, 1, 2], initNoise: 0, widthInit: 'duplicate' }),
    )
    expectMatches(
      model,
      reference(source, big, 'dup', (l) => l % 2),
    )
    dispose(model)
  })
  it('swiglu: gate blocks follow their own source blocks', async () => {
    const s = parseSpec({ ...base, activation: 'swiglu', dModel: 4, nLayers: 1, nHeads: 2, dFF: 8 })
    const t = parseSpec({ ...base, activation: 'swiglu', dModel: 8, nLayers: 2, nHeads: 4, dFF: 16 })
    const src = initModel(s, 3)
    const { model } = await mango.grow(
      src,
      t,
      testContext(1),
      opts({ steps: 0, rank: 1, initNoise: 0, widthInit: 'duplicate' }),
    )
    expectMatches(
      model,
      reference(src, t, 'dup', () => 0),
    )
    dispose(model)
    dispose(src)
  })
})

describe('mango operator parameters', () => {
  it('reports the tensor-ring parameter count for each rank', () => {
    for (const rank of [1, 2, 4]) {
      const op = createMango(
        small,
        big,
        null,
        { rank, widthInit: 'identity', depthInit: 'stack', initNoise: 0 },
        1,
      )
      // blocks: q, k, v, o 1 each + fc1, fc2 2 each = 8 in both; residual 4 -> 8; layers 2 -> 4
      expect(op.dims).toEqual({ B1: 8, B2: 8, I1: 4, I2: 8, O1: 4, O2: 8, L1: 2, L2: 4 })
      expect(op.parameterCount).toBe(rank * rank * (64 + 32 + 32 + 8))
      op.dispose()
    }
  })

  it('gradients reach every core and match finite differences', () => {
    const op = createMango(
      small,
      big,
      null,
      { rank: 2, widthInit: 'identity', depthInit: 'stack', initNoise: 0.3 },
      3,
    )
    const batch = markovBatches(big, 2, 8, 5).next()
    const lossOf = () =>
      tf.tidy(
        () => computeLoss({ spec: big, params: op.materialise(source.params) }, batch).loss.dataSync()[0],
      )
    const vars = op.variables
    const { grads, value } = tf.variableGrads(
      () => computeLoss({ spec: big, params: op.materialise(source.params) }, batch).loss,
      Object.values(vars),
    )
    value.dispose()
    const rng = new SeededRandom(9)
    for (const [name, v] of Object.entries(vars)) {
      const g = grads[v.name].dataSync()
      // every entry of the core receives gradient
      const nonzero = g.filter((x) => Math.abs(x) > 1e-9).length
      expect(nonzero / g.length, `${name}: share of entries with gradient`).toBeGreaterThan(0.95)
      let arg = 0
      for (let i = 0; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[arg])) arg = i
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

function pretrained(spec: TransformerSpec): Promise<Model> {
  return pretrainedModel(spec, markovBatches(spec, 8, 8, 99), 60, 1e-2)
}

function heldOutLoss(model: Model, batches: Batch[]): number {
  let sum = 0
  for (const b of batches) sum += tf.tidy(() => computeLoss(model, b).ce.dataSync()[0])
  return sum / batches.length
}

describe('mango fitting', () => {
  it('lowers held-out target loss vs the initialisation, reports FLOPs, leaks nothing, is deterministic', async () => {
    const src = await pretrained(small)
    const heldStream = markovBatches(big, 8, 8, 4242)
    const held = Array.from({ length: 8 }, () => heldStream.next())
    const before = tf.memory().numTensors
    const o = opts({ steps: 60, learningRate: 5e-3, rank: 2 })
    const init = await mango.grow(src, big, testContext(5), { ...o, steps: 0 })
    const fitted = await mango.grow(src, big, testContext(5, markovBatches(big, 8, 8, 1)), o)
    const l0 = heldOutLoss(init.model, held)
    const l1 = heldOutLoss(fitted.model, held)
    expect(l1).toBeLessThan(l0 - 0.02)
    const r = fitted.report
    expect(r.steps).toBe(60)
    expect(r.details.rank).toBe(2)
    const perStep = r.details.fitFlopsPerStep as number
    expect(r.growthFlops).toBe(60 * perStep + (r.details.materialiseFlops as number))
    const again = await mango.grow(src, big, testContext(5, markovBatches(big, 8, 8, 1)), o)
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

describe('mango across families and architectures', () => {
  const cases: [string, Record<string, unknown>][] = [
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
    ],
    [
      'encoder with masked-LM head, no bias',
      { family: 'encoder', vocabSize: 12, maxSeqLen: 6, mlmHead: true, bias: false },
    ],
    [
      'decoder untied rotary',
      { family: 'decoder', vocabSize: 12, maxSeqLen: 6, tieEmbeddings: false, positional: 'rotary' },
    ],
    ['vit', { family: 'vit', image: { size: 4, patch: 2, channels: 1, classes: 3 } }],
  ]
  for (const [label, arch] of cases)
    it(`${label}: grows width and depth, fits, and runs`, async () => {
      const s = parseSpec({ ...arch, dModel: 4, nLayers: 1, nHeads: 2, dFF: 8 })
      const t = parseSpec({ ...arch, dModel: 8, nLayers: 2, nHeads: 4, dFF: 16 })
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
      const { model, report } = await mango.grow(src, t, testContext(1, stream), opts({ steps: 3, rank: 2 }))
      validateParams(t, model.params)
      expect(report.steps).toBe(3)
      const batch = stream.next()
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

describe('mango refusals', () => {
  it('needs data when fitting', async () => {
    await expect(mango.grow(source, big, testContext(1), opts({}))).rejects.toThrow(/--data moby-dick/)
  })
  it('refuses blocks that do not tile, mixture-of-experts and shrinking', () => {
    const odd = parseSpec({ ...base, dModel: 8, nLayers: 4, nHeads: 4, dFF: 20 })
    expect(() => mango.check(small, odd, opts({}))).toThrow(/multiples of dModel/)
    const moe = parseSpec({
      ...base,
      dModel: 8,
      nLayers: 4,
      nHeads: 4,
      dFF: 16,
      moe: { experts: 2, layers: [1] },
    })
    expect(() => mango.check(small, moe, opts({}))).toThrow(/mixture-of-experts/)
    expect(() => mango.check(big, small, opts({}))).toThrow(/never shrinks/)
    expect(mangoOptions.safeParse({ rank: 0 }).success).toBe(false)
  })
})
