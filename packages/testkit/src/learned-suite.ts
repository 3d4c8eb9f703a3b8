import {
  type Batch,
  forward,
  type GrowthOperator,
  type GrowthReport,
  initModel,
  type Model,
  parseSpec,
  SeededRandom,
  type TransformerSpec,
  validateParams,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { expect, it } from 'vitest'
import { fitContext } from './context.js'
import { disposeBatch } from './fit.js'
import { markovPretrained, meanLoss } from './learned.js'
import { type BatchSource, markovBatches } from './synthetic.js'

const dispose = (m: Model) => tf.dispose(Object.values(m.params))

/** Every tensor of `ref` equals the model's parameter of the same name within `tolerance`. */
export function expectParamsMatch(model: Model, ref: Record<string, Float32Array>, tolerance: number): void {
  validateParams(model.spec, model.params)
  for (const [name, vals] of Object.entries(ref)) {
    const got = model.params[name].dataSync()
    let max = 0
    for (let i = 0; i < vals.length; i++) max = Math.max(max, Math.abs(got[i] - vals[i]))
    expect(max, name).toBeLessThan(tolerance)
  }
}

/**
 * Checks the gradient of `loss` with respect to each of `variables`: it is not negligible
 * (largest |g| > 1e-6), reaches more than 95% of the entries, and matches central finite
 * differences (ε 1e-2) at the largest entry and at a seeded random one.
 */
export function expectGradientsMatchFiniteDifferences(
  variables: Record<string, tf.Variable>,
  loss: () => tf.Scalar,
): void {
  const lossOf = () => tf.tidy(() => loss().dataSync()[0])
  const { grads, value } = tf.variableGrads(loss, Object.values(variables))
  value.dispose()
  const rng = new SeededRandom(9)
  for (const [name, v] of Object.entries(variables)) {
    const g = grads[v.name].dataSync()
    let arg = 0
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[arg])) arg = i
    expect(Math.abs(g[arg]), `gradient of ${name}`).toBeGreaterThan(1e-6)
    const nonzero = g.filter((x) => Math.abs(x) > 1e-9).length
    expect(nonzero / g.length, `${name}: share of entries with gradient`).toBeGreaterThan(0.95)
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
}

/**
 * Registers a learned method's fitting tests: from a Markov-pretrained `small` source grown to
 * `big` with `options`, fitting lowers the held-out loss (`heldOut` batches) by more than
 * `margin` below the initialisation's; the report counts the steps and charges
 * steps × per-step FLOPs plus the materialisation, and lists one loss per step; the same seed
 * gives the same weights; no tensor leaks. `extra` checks the method's own report details.
 * Without data the method refuses to fit with its default options, naming `--data`.
 */
export function describeLearnedFitting<O extends Record<string, unknown> & { steps: number }>(
  op: GrowthOperator<O>,
  setup: {
    small: TransformerSpec
    big: TransformerSpec
    options: O
    heldOut: number
    margin: number
    extra?: (report: GrowthReport) => void
  },
): void {
  const { small, big, options: o } = setup
  it('lowers held-out target loss vs the initialisation, reports FLOPs, leaks nothing, is deterministic', async () => {
    const src = await markovPretrained(small)
    const heldStream = markovBatches(big, 8, 8, 4242)
    const held = Array.from({ length: setup.heldOut }, () => heldStream.next())
    const before = tf.memory().numTensors
    const init = await op.grow(src, big, fitContext(5), { ...o, steps: 0 })
    const fitted = await op.grow(src, big, fitContext(5, markovBatches(big, 8, 8, 1)), o)
    expect(meanLoss(fitted.model, held)).toBeLessThan(meanLoss(init.model, held) - setup.margin)
    const r = fitted.report
    expect(r.steps).toBe(o.steps)
    const perStep = r.details.fitFlopsPerStep as number
    expect(r.details.fitFlops).toBe(o.steps * perStep)
    expect(r.growthFlops).toBe(o.steps * perStep + (r.details.materialiseFlops as number))
    expect((r.details.fitLosses as number[]).length).toBe(o.steps)
    setup.extra?.(r)
    const again = await op.grow(src, big, fitContext(5, markovBatches(big, 8, 8, 1)), o)
    for (const k of Object.keys(fitted.model.params))
      expect(Array.from(again.model.params[k].dataSync())).toEqual(
        Array.from(fitted.model.params[k].dataSync()),
      )
    dispose(init.model)
    dispose(fitted.model)
    dispose(again.model)
    expect(tf.memory().numTensors).toBe(before)
    held.forEach(disposeBatch)
    dispose(src)
  })

  it('needs data when fitting', async () => {
    const source = initModel(small, 7)
    await expect(op.grow(source, big, fitContext(1), op.options.parse({}))).rejects.toThrow(
      /--data moby-dick/,
    )
    dispose(source)
  })
}

/**
 * Registers, for decoder, encoder (post-norm RMSNorm SwiGLU; masked-LM head without biases),
 * untied rotary decoder and ViT sources of shape `from`, a growth to `to` with 3 fitting steps
 * and `options`: the grown parameters are valid, the report counts the steps, the logits are
 * finite with the head's width, and nothing leaks.
 */
export function describeLearnedFamilies<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  from: { dModel: number; nHeads: number; dFF: number },
  to: { dModel: number; nHeads: number; dFF: number },
  options: O,
): void {
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
      const s = parseSpec({ ...arch, ...from, nLayers: 1 })
      const t = parseSpec({ ...arch, ...to, nLayers: 2 })
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
      const { model, report } = await op.grow(src, t, fitContext(1, stream), { ...options, steps: 3 })
      validateParams(t, model.params)
      expect(report.steps).toBe(3)
      const batch: Batch = stream.next()
      const logits = forward(model, batch.inputs)
      expect(logits.shape[logits.shape.length - 1]).toBe(s.family === 'vit' ? 3 : 12)
      expect(logits.dataSync().every((x) => Number.isFinite(x))).toBe(true)
      tf.dispose(logits)
      disposeBatch(batch)
      dispose(model)
      expect(tf.memory().numTensors).toBe(before)
      dispose(src)
    })
}
