import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type CommandIo,
  computeLoss,
  disposeModel,
  initModel,
  loadCheckpoint,
  parseSpec,
  saveCheckpoint,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { growthData, runEval, runTrain } from './commands.js'
import { tinyDecoder, tinyMnistVit } from './testing/specs.testutil.js'

// The handlers behind `sprout train` / `sprout eval`, called directly (no commander).

const dir = mkdtempSync(join(tmpdir(), 'sprout-commands-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const runConfig = {
  spec: tinyDecoder,
  data: 'moby-dick',
  batchSize: 2,
  steps: 4,
  evalEvery: 2,
  evalBatches: 2,
  optimizer: { kind: 'adamw', lr: 0.003 },
  schedule: { kind: 'constant' },
}

function writeConfig(name: string, config: unknown): string {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(config))
  return path
}

function capture(): CommandIo & { lines: string[]; errs: string[] } {
  const lines: string[] = []
  const errs: string[] = []
  return { lines, errs, out: (l) => lines.push(l), err: (l) => errs.push(l) }
}

const metrics = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number; valLoss: number | null })

let before = 0
beforeAll(() => {
  before = tf.memory().numTensors
})

describe('runTrain / runEval', () => {
  const out = join(dir, 'run')

  it('trains from a config and ends stdout with the JSON summary', async () => {
    const io = capture()
    await runTrain({ config: writeConfig('run.json', runConfig), out, json: true, progress: false }, io)
    const summary = JSON.parse(io.lines.at(-1)!)
    expect(Object.keys(summary).sort()).toEqual([
      'flops',
      'seconds',
      'step',
      'tokens',
      'trainLoss',
      'valLoss',
    ])
    const rows = metrics(out)
    expect(rows.map((r) => r.step)).toEqual([1, 2, 3, 4])
    expect(summary.step).toBe(4)
    expect(summary.tokens).toBe(4 * 2 * 8)
    expect(summary.trainLoss).toBe(rows[3].loss)
    expect(summary.valLoss).toBe(rows[3].valLoss)
    expect(summary.flops).toBeGreaterThan(0)
    expect(existsSync(join(out, 'checkpoint', 'sprout.json'))).toBe(true)
  })

  it('a run stopped by its FLOP budget evaluates its last step, in metrics.jsonl too', async () => {
    const o = join(dir, 'budget')
    const first = capture()
    await runTrain(
      {
        config: writeConfig('budget-probe.json', { ...runConfig, steps: 1 }),
        out: join(dir, 'probe'),
        json: true,
        progress: false,
      },
      first,
    )
    const flops = JSON.parse(first.lines.at(-1)!).flops
    const io = capture()
    await runTrain(
      {
        config: writeConfig('budget.json', { ...runConfig, steps: 50, budget: { flops: 2.5 * flops } }),
        out: o,
        json: true,
        progress: false,
      },
      io,
    )
    expect(io.lines[0]).toMatch(/stopped: flops/)
    const rows = metrics(o)
    expect(rows.map((r) => r.step)).toEqual([1, 2, 3])
    expect(rows[2].valLoss).not.toBeNull()
    expect(JSON.parse(io.lines.at(-1)!).valLoss).toBe(rows[2].valLoss)
  })

  it('eval on the same fixed validation batches reproduces the final validation loss', async () => {
    const io = capture()
    await runEval(
      { checkpoint: join(out, 'checkpoint'), data: 'moby-dick', json: true, batches: 2, batchSize: 2 },
      io,
    )
    const r = JSON.parse(io.lines.at(-1)!)
    expect(Object.keys(r).sort()).toEqual(['perplexity', 'valLoss'])
    expect(r.valLoss).toBeCloseTo(metrics(out)[3].valLoss!, 6)
  })

  it('eval of a model that predicts every byte equally reports perplexity 256 (the vocabulary size)', async () => {
    const model = initModel(parseSpec(tinyDecoder), 1)
    expect(model.spec.tieEmbeddings).toBe(true)
    // The head is tied to the zeroed token table (and its bias starts at 0): every logit is 0,
    // a uniform distribution over the 256 byte tokens, whatever the input.
    const table = model.params['embed.tokens']
    model.params['embed.tokens'] = tf.zerosLike(table)
    table.dispose()
    const ckpt = join(dir, 'uniform')
    await saveCheckpoint(ckpt, model)
    disposeModel(model)
    const io = capture()
    await runEval({ checkpoint: ckpt, data: 'moby-dick', json: true, batches: 2, batchSize: 2 }, io)
    const r = JSON.parse(io.lines.at(-1)!)
    expect(r.valLoss).toBeCloseTo(Math.log(256), 5)
    expect(r.perplexity).toBeCloseTo(256, 3)
  })

  it('eval reads text with the tokenizer and sequence length the checkpoint was trained with', async () => {
    const o = join(dir, 'chars')
    const config = { ...runConfig, tokenizer: 'char', seqLen: 6, steps: 2 }
    await runTrain({ config: writeConfig('chars.json', config), out: o, progress: false }, capture())
    const io = capture()
    await runEval(
      { checkpoint: join(o, 'checkpoint'), data: 'moby-dick', json: true, batches: 2, batchSize: 2 },
      io,
    )
    expect(io.lines[0]).toMatch(/char tokens/)
    expect(JSON.parse(io.lines.at(-1)!).valLoss).toBeCloseTo(metrics(o)[1].valLoss!, 6)
  })

  it('eval of a ViT checkpoint on MNIST reports accuracy', async () => {
    const vit = parseSpec(tinyMnistVit)
    const model = initModel(vit, 1)
    const ckpt = join(dir, 'vit')
    await saveCheckpoint(ckpt, model)
    disposeModel(model)
    const io = capture()
    await runEval({ checkpoint: ckpt, data: 'mnist', json: true, batches: 2 }, io)
    const r = JSON.parse(io.lines.at(-1)!)
    expect(Object.keys(r).sort()).toEqual(['accuracy', 'valLoss'])
    expect(r.accuracy).toBeGreaterThanOrEqual(0)
    expect(r.accuracy).toBeLessThanOrEqual(1)
    // An untrained 10-way classifier: loss near ln 10.
    expect(Math.abs(r.valLoss - Math.log(10))).toBeLessThan(0.5)
    expect(io.lines[0]).toMatch(/accuracy \d+\.\d\d%/)
  })

  it('resume extends a finished run with --steps and keeps the earlier rows', async () => {
    const first = metrics(out)
    // A row torn by a kill mid-write is dropped on resume.
    appendFileSync(join(out, 'metrics.jsonl'), '{"step":5,"lo')
    const io = capture()
    await runTrain({ resume: out, steps: 6, json: true, progress: false }, io)
    expect(io.errs[0]).toMatch(/resuming .* at step 4/)
    const rows = metrics(out)
    expect(rows.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6])
    expect(rows.slice(0, 4)).toEqual(first)
    expect(JSON.parse(io.lines.at(-1)!).step).toBe(6)
  })

  it('flags override the config and are recorded in run.json', async () => {
    const o = join(dir, 'override')
    await runTrain(
      {
        config: writeConfig('run2.json', runConfig),
        out: o,
        steps: 2,
        seed: 7,
        checkpointEvery: 1,
        progress: false,
      },
      capture(),
    )
    const saved = JSON.parse(readFileSync(join(o, 'run.json'), 'utf8')).config
    expect([saved.steps, saved.seed, saved.checkpointEvery]).toEqual([2, 7, 1])
    expect(metrics(o)).toHaveLength(2)
  })

  it('continues from a checkpoint ("from"): the first step starts from its weights', async () => {
    const ckpt = loadCheckpoint(join(out, 'checkpoint'))
    if (ckpt.state) tf.dispose(Object.values(ckpt.state))
    const d = await openDataset('moby-dick', ckpt.model.spec, { batchSize: 2, seed: 1 })
    const batch = d.train.next()
    const expected = tf.tidy(() => computeLoss(ckpt.model, batch, { training: true }).loss.dataSync()[0])
    tf.dispose(Object.values(batch))
    disposeModel(ckpt.model)
    const o = join(dir, 'from')
    const from = { ...runConfig, spec: undefined, from: join(out, 'checkpoint'), steps: 1 }
    await runTrain({ config: writeConfig('from.json', from), out: o, progress: false }, capture())
    expect(metrics(o)[0].loss).toBeCloseTo(expected, 5)
  })

  it('growthData gives a GrowthContext real batches and a fit that counts FLOPs per step', async () => {
    const spec = parseSpec(tinyDecoder)
    const g = await growthData('moby-dick', spec, { seed: 1, batchSize: 2 })
    expect([g.batches.batchSize, g.batches.seqLen]).toEqual([2, 8])
    const b = g.batches.next()
    expect(b.inputs.shape).toEqual([2, 8])
    tf.dispose(Object.values(b))
    const model = initModel(spec, 1)
    const scale = tf.tidy(() => tf.variable(tf.scalar(0.5), true, 'growth-data-scale'))
    const r = await g.fit({
      trainables: { scale },
      loss: (batch) =>
        tf.tidy(() => {
          const scaled = { ...model.params, 'norm.weight': tf.mul(model.params['norm.weight'], scale) }
          return computeLoss({ spec, params: scaled }, batch, { training: true }).loss
        }),
      steps: 3,
      learningRate: 0.05,
      flopsPerStep: 1000,
    })
    expect(r.flops).toBe(3000)
    expect(r.losses).toHaveLength(3)
    expect(scale.dataSync()[0]).not.toBeCloseTo(0.5, 3)
    scale.dispose()
    disposeModel(model)
  })

  it('refuses to overwrite a run and names the way to continue it', async () => {
    await expect(
      runTrain({ config: writeConfig('again.json', runConfig), out, progress: false }, capture()),
    ).rejects.toThrow(/already holds a training run; continue it with `sprout train --resume/)
  })

  it('names the bad config field and leaves nothing on disk', async () => {
    const cases: [unknown, RegExp][] = [
      [{ ...runConfig, optimizer: { kind: 'adamw', lr: -1 } }, /optimizer\.lr/],
      [{ ...runConfig, batchSize: 2.5 }, /batchSize/],
      [{ ...runConfig, lerningRate: 0.1 }, /lerningRate/],
      [{ ...runConfig, schedule: { kind: 'exponential' } }, /schedule\.kind/],
      [{ ...runConfig, spec: undefined }, /exactly one of "spec" .* or "from"/],
    ]
    for (const [i, [config, message]] of cases.entries()) {
      const o = join(dir, `bad-${i}`)
      await expect(
        runTrain({ config: writeConfig(`bad-${i}.json`, config), out: o }, capture()),
      ).rejects.toThrow(message)
      expect(existsSync(o)).toBe(false)
    }
  })

  it('a missing data path or spec is a clear error and writes nothing', async () => {
    const o = join(dir, 'nodata')
    const folders = () => readdirSync(dir).filter((n) => !n.endsWith('.json'))
    const before = folders()
    await expect(
      runTrain({ config: writeConfig('nodata.json', { ...runConfig, data: 'moby' }), out: o }, capture()),
    ).rejects.toThrow(/moby/)
    expect(existsSync(o)).toBe(false)
    await expect(
      runTrain(
        { config: writeConfig('nospec.json', { ...runConfig, spec: 'nope.json' }), out: o },
        capture(),
      ),
    ).rejects.toThrow(/spec file .*nope\.json does not exist/)
    expect(existsSync(o)).toBe(false)
    expect(folders()).toEqual(before)
  })

  it('a run that diverges before its first checkpoint names the step and leaves no directory', async () => {
    const o = join(dir, 'diverged')
    const config = { ...runConfig, optimizer: { kind: 'sgd', lr: 1e30 } }
    await expect(
      runTrain({ config: writeConfig('diverge.json', config), out: o, progress: false }, capture()),
    ).rejects.toThrow(
      /training loss is (NaN|Infinity|-Infinity) at step 2; stopped, no checkpoint was written/,
    )
    expect(existsSync(o)).toBe(false)
  })

  it('resume and eval refuse directories that are not runs or checkpoints', async () => {
    await expect(runTrain({ resume: join(dir, 'nowhere') }, capture())).rejects.toThrow(/not a training run/)
    await expect(runTrain({ resume: out, seed: 3 }, capture())).rejects.toThrow(/keeps the run's seed/)
    await expect(runTrain({ resume: out, config: 'x.json' }, capture())).rejects.toThrow(/drop --config/)
    await expect(runTrain({ resume: out, out: join(dir, 'elsewhere') }, capture())).rejects.toThrow(
      /drop --out/,
    )
    await expect(runEval({ checkpoint: join(dir, 'nowhere'), data: 'moby-dick' }, capture())).rejects.toThrow(
      /nowhere/,
    )
  })

  it('leaves no tensors behind', () => {
    expect(tf.memory().numTensors).toBe(before)
  })
})
