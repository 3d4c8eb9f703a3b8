import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  disposeModel,
  exampleFlops,
  GrowthError,
  type GrowthOperator,
  initModel,
  loadCheckpoint,
  parseSpec,
  skipUnless,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import lemon from '@sprout/lemon'
import {
  learningRate,
  type MetricsRow,
  planStages,
  runTrain,
  type StageRecord,
  stagedSchedule,
  trainProgressive,
} from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { fourWide, testResolver, tinyDecoder, twoLayers, twoStageConfig } from './testing/stages.testutil.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../../..')
// The killed runs are child processes importing the built packages (`npm test` builds first).
const built = ['packages/trainer', 'plugins/stack', 'plugins/lemon'].every((p) =>
  existsSync(join(root, p, 'dist/index.js')),
)
const dir = mkdtempSync(join(tmpdir(), 'sprout-stages-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function capture() {
  const lines: string[] = []
  const errs: string[] = []
  return { lines, errs, out: (l: string) => lines.push(l), err: (l: string) => errs.push(l) }
}
const rows = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsRow)
function writeConfig(name: string, config: unknown): string {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(config))
  return path
}
const run = { spec: parseSpec(tinyDecoder), steps: 40, tokensPerStep: 16, seqLen: 8, examplesPerStep: 2 }

describe('planStages: bad stages are refused before training, naming the stage', () => {
  const stage = (s: Record<string, unknown>) => ({ method: 'stack', target: twoLayers, ...s }) as never
  const cases: [string, unknown[], RegExp][] = [
    [
      'atStep 0',
      [stage({ atStep: 0 })],
      /^stage 1 \(stack\): atStep must be a positive whole step \(got 0\)/,
    ],
    [
      'not increasing',
      [stage({ atStep: 10 }), { atStep: 10, method: 'lemon', target: fourWide }],
      /^stage 2 \(lemon\): step 10 does not come after the previous stage's step 10/,
    ],
    [
      'beyond steps',
      [stage({ atStep: 40 })],
      /^stage 1 \(stack\): step 40 is not before the end of the run \(steps 40\)/,
    ],
    ['atTokens beyond steps', [stage({ atTokens: 16 * 45 })], /^stage 1 \(stack\): step 45 is not before/],
    [
      'shrinks',
      [stage({ atStep: 5 }), { atStep: 10, method: 'lemon', target: tinyDecoder }],
      /^stage 2 \(lemon\): lemon: target nLayers 1 is smaller than the source's 2/,
    ],
    [
      'changes the architecture',
      [stage({ atStep: 5, target: { ...twoLayers, norm: 'rmsnorm' } })],
      /^stage 1 \(stack\): stack: target norm "rmsnorm" differs/,
    ],
    [
      'the method refuses',
      [stage({ atStep: 5, target: { ...tinyDecoder, dModel: 32 } })],
      /^stage 1 \(stack\): stack grows depth only/,
    ],
    ['unknown method', [stage({ atStep: 5, method: 'nope' })], /^stage 1 \(nope\): unknown method "nope"/],
    [
      'bad option',
      [stage({ atStep: 5, options: { bogus: 1 } })],
      /^stage 1 \(stack\): method "stack": option/,
    ],
    [
      '"auto" for a method without a timing rule',
      [{ atStep: 'auto', method: 'lemon', target: fourWide }],
      /^stage 1 \(lemon\): atStep "auto" needs a method with a growth-timing rule/,
    ],
    [
      '"auto" timing beyond the run (G_stack fitted on large models)',
      [stage({ atStep: 'auto' })],
      /^stage 1 \(stack\): atStep "auto": stack's timing rule puts the growth after .* tokens \(step \d+\), beyond the run's 40 steps/,
    ],
  ]
  for (const [label, stages, message] of cases)
    it(label, async () => {
      await expect(planStages(stages as never, run, testResolver)).rejects.toThrow(message)
    })

  it('accepts increasing steps, atTokens in whole steps, and checks each stage against the previous target', async () => {
    const planned = await planStages(
      [stage({ atTokens: 100 }), { atStep: 20, method: 'lemon', target: fourWide, options: {} }] as never,
      run,
      testResolver,
    )
    expect(planned.map((p) => [p.index, p.step, p.op.name, p.target.nLayers])).toEqual([
      [1, 7, 'stack', 2],
      [2, 20, 'lemon', 4],
    ])
  })

  it('sprout train refuses a bad stage with one line and writes nothing', async () => {
    const config = writeConfig('bad.json', twoStageConfig(40, [20, 10]))
    const out = join(dir, 'bad')
    await expect(
      runTrain({ config, out, progress: false, resolveMethod: testResolver }, capture()),
    ).rejects.toThrow(
      /^stage 2 \(lemon\): step 10 does not come after the previous stage's step 20; stages must grow at increasing steps$/,
    )
    expect(existsSync(out)).toBe(false)
  })
})

describe('stagedSchedule', () => {
  const base = { kind: 'cosine' as const, warmupSteps: 2, minLrRatio: 0.1 }
  const record = (step: number, schedule: 'continue' | 'restart', warmupSteps: number) =>
    ({ step, schedule, warmupSteps }) as StageRecord
  it('continues the run schedule, with an optional warm-up after a growth, or restarts it', () => {
    const lr = (records: StageRecord[], step: number) =>
      learningRate(stagedSchedule(base, records), 1, step, 100)
    const plain = (step: number, total = 100) => learningRate(base, 1, step, total)
    expect(lr([record(30, 'continue', 0)], 40)).toBe(plain(40))
    // Warm-up over 4 steps after a growth at 30: steps 30..33 get 1/4 .. 4/4 of the schedule.
    expect(lr([record(30, 'continue', 4)], 30)).toBeCloseTo(plain(30) / 4, 12)
    expect(lr([record(30, 'continue', 4)], 32)).toBeCloseTo((plain(32) * 3) / 4, 12)
    expect(lr([record(30, 'continue', 4)], 34)).toBe(plain(34))
    // Before the growth nothing changes.
    expect(lr([record(30, 'restart', 5)], 29)).toBe(plain(29))
    // Restart at 30 with its own 5-step warm-up: the schedule of a 70-step run.
    expect(lr([record(30, 'restart', 5)], 31)).toBeCloseTo(
      learningRate({ ...base, warmupSteps: 5 }, 1, 1, 70),
      12,
    )
    expect(lr([record(30, 'restart', 0)], 60)).toBeCloseTo(plain(30, 70), 12)
  })
})

describe('progressive training through sprout train --config', () => {
  it('grows twice (stack, then lemon), ends with the final spec, tags rows, lists stages, adds up FLOPs', async () => {
    const before = tf.memory().numTensors
    const config = writeConfig('two.json', twoStageConfig(30, [10, 20]))
    const out = join(dir, 'two')
    const io = capture()
    await runTrain({ config, out, json: true, progress: false, resolveMethod: testResolver }, io)
    const summary = JSON.parse(io.lines.at(-1)!)
    expect(summary.stage).toBe(2)
    expect(summary.spec).toMatchObject({ nLayers: 4, dModel: 32, nHeads: 4, dFF: 64 })
    const r = rows(out)
    expect(r.map((x) => x.stage)).toEqual([...Array(10).fill(0), ...Array(10).fill(1), ...Array(10).fill(2)])
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'))
    expect(
      runJson.stages.map((s: StageRecord) => [s.stage, s.step, s.method, s.spec.nLayers, s.moments]),
    ).toEqual([
      [1, 10, 'stack', 2, 'mapped'],
      [2, 20, 'lemon', 4, 'mapped'],
    ])
    for (const s of runJson.stages as StageRecord[]) {
      expect(s.growthFlops).toBeGreaterThanOrEqual(0)
      expect(s.seconds).toBeGreaterThan(0)
    }
    // LEMON (noiseStd 0) is lossless: validation loss right after the growth equals the one before.
    expect(runJson.stages[1].valLossAfter).toBeCloseTo(runJson.stages[1].valLossBefore, 4)
    // FLOPs: 10 steps at each size (forward + backward per example × batch) plus the growths.
    const perStep = (spec: Record<string, unknown>) => exampleFlops(parseSpec(spec), 8).total * 2
    const growth = runJson.stages.reduce((a: number, s: StageRecord) => a + s.growthFlops, 0)
    const expected = 10 * (perStep(tinyDecoder) + perStep(twoLayers) + perStep(fourWide)) + growth
    expect(summary.flops).toBe(expected)
    expect(r.at(-1)!.flops).toBe(expected)
    expect(r[10].flops - r[9].flops).toBe(perStep(twoLayers) + runJson.stages[0].growthFlops)
    const ckpt = JSON.parse(readFileSync(join(out, 'checkpoint', 'sprout.json'), 'utf8'))
    expect(ckpt.meta.stage).toBe(2)
    expect(io.lines.some((l) => /stage 2 of 2: .*4 layers/.test(l) || /stage 2 of 2/.test(l))).toBe(true)
    expect(tf.memory().numTensors).toBe(before)
  }, 600_000)

  it('carried moments (bench API): moments survive a lossless growth, and the loss after it does not jump', async () => {
    const before = tf.memory().numTensors
    const spec = parseSpec(tinyDecoder)
    const data = await openDataset('moby-dick', spec, { batchSize: 4, seed: 1 })
    const val = data.valBatches(2)
    const target = { ...tinyDecoder, dModel: 32, nHeads: 4, dFF: 64 }
    const config = {
      steps: 45,
      optimizer: { kind: 'adamw' as const, lr: 0.01 },
      schedule: { kind: 'constant' as const },
      evalEvery: 1,
      evalBatches: 2,
    }
    const stages = await planStages(
      [{ atStep: 40, method: 'lemon', target, options: { noiseStd: 0 } }] as never,
      { spec, steps: 45, tokensPerStep: data.train.tokensPerBatch, seqLen: 8, examplesPerStep: 4 },
      testResolver,
    )
    const out = join(dir, 'carried')
    let carried: number[][] = []
    const model = initModel(spec, 1)
    const result = await trainProgressive({
      model,
      train: data.train,
      val,
      config,
      stages,
      seed: 1,
      outDir: out,
      progress: false,
      // The checkpoint written right after the growth holds the moments the grown model starts with.
      onStage: () => {
        const ckpt = loadCheckpoint(join(out, 'checkpoint'))
        const m = ckpt.state!['m.layers.0.mlp.fc1.weight']
        const cols = m.arraySync() as number[][]
        // Unit j and its copy j + 32 carry the source unit's moment, halved (two copies share its gradient).
        carried = cols.map((row) => row.slice(0, 32).map((x, j) => x - row[j + 32]))
        expect(Math.max(...cols.flat().map(Math.abs))).toBeGreaterThan(0)
        disposeModel(ckpt.model)
        tf.dispose(Object.values(ckpt.state!))
      },
    })
    // Zeroed moments would fail here: the grown model's moments are the source's, mapped.
    expect(Math.max(...carried.flat().map(Math.abs))).toBe(0)
    expect(result.stages[0].moments).toBe('mapped')
    // The loss on fixed validation batches (the per-batch training loss of this tiny run is too
    // noisy for a 5-step window) after the lossless growth is not above the 5 steps before by more
    // than the largest step-to-step change before it.
    const losses = result.history.map((r) => r.valLoss!)
    const before5 = losses.slice(35, 40)
    const after5 = losses.slice(40, 45)
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length
    const noise = Math.max(...before5.slice(1).map((x, i) => Math.abs(x - before5[i])))
    expect(mean(after5) - mean(before5)).toBeLessThan(noise)
    expect(result.stages[0].valLossAfter).toBeCloseTo(result.stages[0].valLossBefore!, 4)
    // FLOPs of every stage are in the curve the bench reads.
    expect(result.history.at(-1)!.flops).toBe(
      40 * exampleFlops(spec, 8).total * 4 +
        5 * exampleFlops(parseSpec(target), 8).total * 4 +
        result.stages[0].growthFlops,
    )
    disposeModel(result.model)
    disposeModel(model)
    tf.dispose(val.flatMap((b) => Object.values(b)))
    expect(tf.memory().numTensors).toBe(before)
  }, 600_000)

  it('a method that fails at run time leaves the checkpoint before the growth intact and says so; resume regrows exactly', async () => {
    let failures = 1
    const flaky: GrowthOperator<any> = {
      ...lemon,
      async grow(...args) {
        if (failures-- > 0) throw new GrowthError('lemon: simulated failure')
        return lemon.grow(...args)
      },
    }
    const resolver = async (ref: string) => (ref === 'lemon' ? flaky : testResolver(ref))
    const config = writeConfig('flaky.json', twoStageConfig(26, [8, 16], { checkpointEvery: 5 }))
    const out = join(dir, 'flaky')
    await expect(
      runTrain({ config, out, progress: false, resolveMethod: resolver }, capture()),
    ).rejects.toThrow(
      /^stage 2 \(lemon at step 16\) failed: lemon: simulated failure; the last checkpoint \(step 16, stage 1\) in .*checkpoint is intact/,
    )
    const ckpt = JSON.parse(readFileSync(join(out, 'checkpoint', 'sprout.json'), 'utf8'))
    expect([ckpt.meta.trainer.step, ckpt.meta.stage, ckpt.spec.nLayers]).toEqual([16, 1, 2])
    await runTrain({ resume: out, progress: false, resolveMethod: resolver }, capture())
    const reference = join(dir, 'flaky-reference')
    await runTrain({ config, out: reference, progress: false, resolveMethod: testResolver }, capture())
    const a = rows(out).map((x) => [x.step, x.stage, x.loss, x.valLoss])
    const b = rows(reference).map((x) => [x.step, x.stage, x.loss, x.valLoss])
    expect(a).toEqual(b)
  }, 900_000)
})

type Exit = { code: number | null; signal: NodeJS.Signals | null }

async function startedRun(config: string, out: string, lines: number) {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'testing/stages-driver.ts'), config, out],
    { cwd: root, stdio: 'ignore' },
  )
  const exited = new Promise<Exit>((r) => child.on('exit', (code, signal) => r({ code, signal })))
  const metrics = join(out, 'metrics.jsonl')
  for (let i = 0; i < 3000; i++) {
    if (existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > lines) break
    await new Promise((r) => setTimeout(r, 10))
  }
  return { child, exited }
}

describe('kill and resume across growth boundaries', () => {
  it.skipIf(skipUnless(built, 'the built @sprout/trainer, @sprout/stack and @sprout/lemon (npm run build)'))(
    'runs killed with SIGKILL after each growth (before the next checkpoint) resume to the uninterrupted losses',
    async () => {
      const config = writeConfig('kill.json', twoStageConfig(30, [12, 21], { checkpointEvery: 5 }))
      const reference = join(dir, 'kill-reference')
      await runTrain({ config, out: reference, progress: false, resolveMethod: testResolver }, capture())
      const expected = rows(reference).map((x) => [x.step, x.stage, x.loss, x.valLoss])
      for (const lines of [13, 22]) {
        const killed = join(dir, `killed-${lines}`)
        const { child, exited } = await startedRun(config, killed, lines)
        child.kill('SIGKILL')
        expect((await exited).signal).toBe('SIGKILL')
        const atKill = rows(killed).at(-1)!.step
        expect(atKill).toBeLessThan(30)
        await runTrain({ resume: killed, progress: false, resolveMethod: testResolver }, capture())
        expect(rows(killed).map((x) => [x.step, x.stage, x.loss, x.valLoss])).toEqual(expected)
      }
    },
    900_000,
  )
})
