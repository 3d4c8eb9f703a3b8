import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeLoss, disposeModel, initModel, loadCheckpoint, parseSpec } from '@sprout/core'
import { type Dataset, openDataset } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createFit, pretrainModel, quietFitContext } from './fit.js'
import { evaluate, evaluateMasked, type TrainConfig, type TrainerState, train } from './loop.js'
import { AdamW, clipByGlobalNorm, Sgd } from './optimizers.js'
import { learningRate } from './schedule.js'
import { tinyDecoder, tinyMnistVit } from './testing/specs.testutil.js'

const dir = mkdtempSync(join(tmpdir(), 'sprout-trainer-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const spec = parseSpec({ ...tinyDecoder, maxSeqLen: 16 })
const base: TrainConfig = {
  steps: 6,
  optimizer: { kind: 'adamw', lr: 3e-3, weightDecay: 0.1 },
  schedule: { kind: 'cosine', warmupSteps: 2, minLrRatio: 0.1 },
  clipNorm: 1,
  evalEvery: 3,
  evalBatches: 2,
}

async function data(batchSize: number, seed = 1): Promise<Dataset> {
  return openDataset('moby-dick', spec, { batchSize, seqLen: 8, seed })
}

async function run(
  config: TrainConfig,
  batchSize = 2,
  seed = 1,
  extra: Partial<Parameters<typeof train>[0]> = {},
) {
  const d = await data(batchSize, seed)
  const val = d.valBatches(config.evalBatches)
  const model = initModel(spec, 3)
  try {
    return await train({ model, train: d.train, val, config, progress: false, ...extra })
  } finally {
    disposeModel(model)
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}

let before = 0
beforeAll(() => {
  before = tf.memory().numTensors
})

describe('optimizers', () => {
  it('AdamW matches a hand-computed update (decoupled decay, bias correction)', () => {
    const p = tf.tidy(() => tf.variable(tf.tensor2d([[1, -2]])))
    const opt = new AdamW({ p }, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 })
    const grads = [
      [0.5, -1],
      [0.2, 0.3],
    ]
    let w = [1, -2]
    const m = [0, 0]
    const v = [0, 0]
    const lr = 0.01
    grads.forEach((g, t) => {
      tf.tidy(() => opt.apply({ p: tf.tensor2d([g]) }, lr))
      w = w.map((wi, i) => {
        m[i] = 0.9 * m[i] + 0.1 * g[i]
        v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
        const mh = m[i] / (1 - 0.9 ** (t + 1))
        const vh = v[i] / (1 - 0.999 ** (t + 1))
        return wi * (1 - lr * 0.1) - (lr * mh) / (Math.sqrt(vh) + 1e-8)
      })
    })
    const got = (p.arraySync() as number[][])[0]
    expect(got[0]).toBeCloseTo(w[0], 6)
    expect(got[1]).toBeCloseTo(w[1], 6)
    // first step of Adam moves each weight by ~lr, whatever the gradient scale
    expect(opt.steps).toBe(2)
    const state = opt.state()
    expect((state['m.p'].arraySync() as number[][])[0][0]).toBeCloseTo(m[0], 6)
    tf.dispose([p, ...Object.values(state)])
    opt.dispose()
  })

  it('AdamW does not decay vectors (biases, norm scales) by default', () => {
    const b = tf.tidy(() => tf.variable(tf.tensor1d([1])))
    const opt = new AdamW({ b }, { weightDecay: 0.5 })
    tf.tidy(() => opt.apply({ b: tf.tensor1d([0]) }, 0.1))
    expect(b.dataSync()[0]).toBe(1)
    b.dispose()
    opt.dispose()
  })

  it('SGD with momentum matches the heavy-ball recursion', () => {
    const p = tf.tidy(() => tf.variable(tf.tensor1d([1])))
    const opt = new Sgd({ p }, { momentum: 0.9 })
    tf.tidy(() => opt.apply({ p: tf.tensor1d([1]) }, 0.1)) // buf 1, p 0.9
    tf.tidy(() => opt.apply({ p: tf.tensor1d([1]) }, 0.1)) // buf 1.9, p 0.71
    expect(p.dataSync()[0]).toBeCloseTo(0.71, 6)
    p.dispose()
    opt.dispose()
  })

  it('clips by global norm and reports the norm before clipping', () => {
    const { grads, norm } = clipByGlobalNorm({ a: tf.tensor1d([3]), b: tf.tensor1d([4]) }, 1)
    expect(norm).toBeCloseTo(5, 6)
    expect(grads.a.dataSync()[0]).toBeCloseTo(0.6, 5)
    expect(grads.b.dataSync()[0]).toBeCloseTo(0.8, 5)
    tf.dispose(Object.values(grads))
    const kept = { a: tf.tensor1d([0.3]) }
    expect(clipByGlobalNorm(kept, 1).grads).toBe(kept)
    kept.a.dispose()
  })
})

describe('schedules', () => {
  it('warmup, cosine to a floor, linear, constant, user function', () => {
    const cos = { kind: 'cosine', warmupSteps: 10, minLrRatio: 0.1 } as const
    expect(learningRate(cos, 1, 0, 110)).toBeCloseTo(0.1)
    expect(learningRate(cos, 1, 9, 110)).toBeCloseTo(1)
    expect(learningRate(cos, 1, 10, 110)).toBeCloseTo(1)
    expect(learningRate(cos, 1, 60, 110)).toBeCloseTo(0.55)
    expect(learningRate(cos, 1, 110, 110)).toBeCloseTo(0.1)
    expect(learningRate({ kind: 'linear', minLrRatio: 0 }, 2, 25, 100)).toBeCloseTo(1.5)
    expect(learningRate({ kind: 'cosine', minLrRatio: 0, decaySteps: 10 }, 1, 50, 100)).toBe(0)
    expect(learningRate({ kind: 'constant' }, 0.3, 99, 100)).toBe(0.3)
    expect(learningRate({ kind: 'function', fn: (s, n) => s / n }, 2, 5, 10)).toBe(1)
  })
})

describe('train', () => {
  it('is deterministic under a seed and the loss falls', async () => {
    const a = await run({ ...base, steps: 12 })
    const b = await run({ ...base, steps: 12 })
    const c = await run({ ...base, steps: 12 }, 2, 2)
    expect(a.history.map((r) => r.loss)).toEqual(b.history.map((r) => r.loss))
    expect(c.history.map((r) => r.loss)).not.toEqual(a.history.map((r) => r.loss))
    expect(a.history.at(-1)!.loss).toBeLessThan(a.history[0].loss)
    expect(a.history.filter((r) => r.valLoss !== null).map((r) => r.step)).toEqual([3, 6, 9, 12])
    expect(a.state.tokens).toBe(12 * 2 * 8)
    for (const r of [a, b, c]) disposeModel(r.model)
  })

  it('accumulating 4 micro-batches of B equals one batch of 4B', async () => {
    const acc = await run({ ...base, steps: 3, accumulate: 4 }, 2)
    const big = await run({ ...base, steps: 3 }, 8)
    for (const [i, r] of acc.history.entries()) expect(r.loss).toBeCloseTo(big.history[i].loss, 5)
    for (const [name, t] of Object.entries(acc.model.params)) {
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(t, big.model.params[name]))).dataSync()[0])
      expect(diff, name).toBeLessThan(1e-5)
    }
    expect(acc.state.flops).toBe(big.state.flops)
    disposeModel(acc.model)
    disposeModel(big.model)
  })

  it('stops at a FLOP budget and at a target validation loss', async () => {
    const once = await run({ ...base, steps: 1 })
    const perStep = once.state.flops
    disposeModel(once.model)
    const capped = await run({ ...base, steps: 50, budget: { flops: 2.5 * perStep } })
    expect(capped.stoppedBy).toBe('flops')
    expect(capped.state.step).toBe(3)
    disposeModel(capped.model)
    const target = await run({ ...base, steps: 50, evalEvery: 1, budget: { targetValLoss: 10 } })
    expect(target.stoppedBy).toBe('targetValLoss')
    expect(target.state.step).toBe(1)
    disposeModel(target.model)
  })

  it('names the step where the loss became NaN and keeps the last good checkpoint', async () => {
    const out = join(dir, 'nan')
    const config: TrainConfig = {
      ...base,
      steps: 10,
      checkpointEvery: 2,
      optimizer: { kind: 'sgd', lr: 1 },
      schedule: { kind: 'function', fn: (s) => (s >= 4 ? 1e30 : 1e-3) },
    }
    await expect(run(config, 2, 1, { outDir: out })).rejects.toThrow(
      /training loss is (NaN|Infinity) at step 6; stopped, the last good checkpoint \(step 4\) is in .*nan\/checkpoint/,
    )
    const ckpt = loadCheckpoint(join(out, 'checkpoint'))
    expect((ckpt.meta.trainer as TrainerState).step).toBe(4)
    disposeModel(ckpt.model)
    if (ckpt.state) tf.dispose(Object.values(ckpt.state))
  })

  it('resumes from a checkpoint with the same losses as an uninterrupted run', async () => {
    const full = await run({ ...base, steps: 8 })
    const out = join(dir, 'resume')
    const first = await run(
      { ...base, steps: 8, checkpointEvery: 4, budget: { flops: 4 * (full.state.flops / 8) } },
      2,
      1,
      { outDir: out },
    )
    expect(first.state.step).toBe(4)
    disposeModel(first.model)
    const ckpt = loadCheckpoint(join(out, 'checkpoint'))
    const d = await data(2)
    const val = d.valBatches(base.evalBatches)
    const rest = await train({
      model: ckpt.model,
      train: d.train,
      val,
      config: { ...base, steps: 8, checkpointEvery: 4 },
      optimizerState: ckpt.state!,
      resumeFrom: ckpt.meta.trainer as TrainerState,
      outDir: out,
      progress: false,
    })
    expect(rest.history.map((r) => r.loss)).toEqual(full.history.slice(4).map((r) => r.loss))
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.map((l) => l.loss)).toEqual(full.history.map((r) => r.loss))
    tf.dispose(val.flatMap((b) => Object.values(b)))
    tf.dispose(Object.values(ckpt.state!))
    for (const m of [full.model, rest.model, ckpt.model]) disposeModel(m)
  })
})

describe('mixed losses', () => {
  it('adds the MoE auxiliary losses from computeLoss into the training loss', async () => {
    const moe = parseSpec({
      ...tinyDecoder,
      moe: { experts: 4, topK: 2, layers: [0], auxLossWeight: 0.5, zLossWeight: 0.1 },
    })
    const open = () => openDataset('moby-dick', moe, { batchSize: 2, seqLen: 8, seed: 1 })
    const model = initModel(moe, 3)
    // The first step's loss is the initial model's loss on the stream's first batch.
    const first = (await open()).train.next()
    const [total, ce] = tf.tidy(() => {
      const out = computeLoss(model, first, { training: true })
      return [out.loss.dataSync()[0], out.ce.dataSync()[0]]
    })
    tf.dispose(Object.values(first))
    const d = await open()
    const val = d.valBatches(1)
    const r = await train({
      model,
      train: d.train,
      val,
      config: { ...base, steps: 1, evalBatches: 1 },
      progress: false,
    })
    expect(total - ce).toBeGreaterThan(1e-3)
    expect(r.history[0].loss).toBeCloseTo(total, 5)
    tf.dispose(val.flatMap((b) => Object.values(b)))
    disposeModel(r.model)
    disposeModel(model)
  })
})

describe('growth mask', () => {
  it('masked parameters start at 0 (no gradient at step 0) and ramp in by step / rampSteps', async () => {
    const mask = { params: ['layers.0.mlp.fc2.weight', 'layers.0.mlp.fc2.bias'], rampSteps: 4 }
    const model = initModel(spec, 3)
    // Step 1 sees the model with the masked parameters multiplied by 0.
    const first = (await data(2)).train.next()
    const zeroed = {
      ...model.params,
      'layers.0.mlp.fc2.weight': tf.zerosLike(model.params['layers.0.mlp.fc2.weight']),
      'layers.0.mlp.fc2.bias': tf.zerosLike(model.params['layers.0.mlp.fc2.bias']),
    }
    const expected = tf.tidy(
      () => computeLoss({ spec, params: zeroed }, first, { training: true }).loss.dataSync()[0],
    )
    tf.dispose([zeroed['layers.0.mlp.fc2.weight'], zeroed['layers.0.mlp.fc2.bias'], ...Object.values(first)])
    const d = await data(2)
    const val = d.valBatches(1)
    const config: TrainConfig = {
      ...base,
      steps: 2,
      evalEvery: 1,
      evalBatches: 1,
      optimizer: { kind: 'adamw', lr: 1e-2, weightDecay: 0 },
    }
    const one = await train({
      model,
      train: d.train,
      val,
      config: { ...config, steps: 1 },
      mask,
      progress: false,
    })
    expect(one.history[0].loss).toBeCloseTo(expected, 5)
    for (const n of mask.params)
      expect(Array.from(one.model.params[n].dataSync())).toEqual(Array.from(model.params[n].dataSync()))
    const other = 'layers.0.attn.q.weight'
    expect(Array.from(one.model.params[other].dataSync())).not.toEqual(
      Array.from(model.params[other].dataSync()),
    )
    // The validation loss after step 1 is that of the model at mask factor 1/4.
    expect(one.history[0].valLoss).toBeCloseTo(evaluateMasked(one.model, val, mask, 1).loss, 6)
    expect(evaluateMasked(one.model, val, mask, 1).loss).not.toBeCloseTo(evaluate(one.model, val).loss, 3)
    tf.dispose(val.flatMap((b) => Object.values(b)))
    disposeModel(one.model)
    disposeModel(model)
  })
})

describe('images', () => {
  it('trains a tiny ViT on MNIST and reports validation accuracy', async () => {
    const vit = parseSpec(tinyMnistVit)
    const d = await openDataset('mnist', vit, { batchSize: 8, seed: 1 })
    const val = d.valBatches(2)
    const model = initModel(vit, 1)
    const r = await train({
      model,
      train: d.train,
      val,
      config: { ...base, steps: 4, evalEvery: 2 },
      progress: false,
    })
    const evals = r.history.filter((h) => h.valLoss !== null)
    expect(evals).toHaveLength(2)
    for (const e of evals) {
      expect(e.valAccuracy).toBeGreaterThanOrEqual(0)
      expect(e.valAccuracy).toBeLessThanOrEqual(1)
    }
    expect(r.state.tokens).toBe(4 * 8 * 17)
    disposeModel(model)
    disposeModel(r.model)
    tf.dispose(val.flatMap((b) => Object.values(b)))
  })
})

describe('fit', () => {
  it('trains only the given variables on real batches and counts their FLOPs', async () => {
    const d = await data(2)
    const scale = tf.tidy(() => tf.variable(tf.scalar(0.1)))
    const model = initModel(spec, 1)
    const fit = createFit(d.train)
    const { computeLoss } = await import('@sprout/core')
    const r = await fit({
      trainables: { scale },
      loss: (batch) =>
        tf.tidy(() => {
          const scaled = {
            spec,
            params: { ...model.params, 'embed.tokens': tf.mul(model.params['embed.tokens'], scale) },
          }
          return computeLoss(scaled, batch, { training: true }).loss
        }),
      steps: 5,
      learningRate: 0.05,
      flopsPerStep: 1000,
    })
    expect(r.steps).toBe(5)
    expect(r.flops).toBe(5000)
    expect(r.losses).toHaveLength(5)
    expect(scale.dataSync()[0]).not.toBeCloseTo(0.1, 4)
    scale.dispose()
    disposeModel(model)
  })
})

describe('pretrainModel and quietFitContext', () => {
  it('pretrainModel trains every weight from the seeded init, deterministically, leaving only the model', async () => {
    const before = tf.memory().numTensors
    const a = await pretrainModel(spec, (await data(2)).train, { steps: 4, learningRate: 1e-2, seed: 5 })
    const b = await pretrainModel(spec, (await data(2)).train, { steps: 4, learningRate: 1e-2, seed: 5 })
    const init = initModel(spec, 5)
    expect(a.losses).toHaveLength(4)
    expect(a.losses).toEqual(b.losses)
    for (const k of Object.keys(init.params)) {
      expect(Array.from(a.model.params[k].dataSync()), k).toEqual(Array.from(b.model.params[k].dataSync()))
      expect(Array.from(a.model.params[k].dataSync()), k).not.toEqual(Array.from(init.params[k].dataSync()))
    }
    disposeModel(init)
    disposeModel(b.model)
    expect(tf.memory().numTensors).toBe(before + Object.keys(a.model.params).length)
    disposeModel(a.model)
  })
  it('quietFitContext has a fit and batches only when given a stream', async () => {
    const bare = quietFitContext(3)
    expect(bare.fit).toBeUndefined()
    expect(bare.batches).toBeUndefined()
    expect(bare.seed).toBe(3)
    const stream = (await data(2)).train
    const withData = quietFitContext(3, stream)
    expect(withData.batches).toBe(stream)
    expect(typeof withData.fit).toBe('function')
  })
})

describe('memory', () => {
  it('leaves no tensors behind', () => {
    expect(tf.memory().numTensors).toBe(before)
  })
})
