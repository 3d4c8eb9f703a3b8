import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  disposeModel,
  initModel,
  loadCheckpoint,
  type Model,
  SproutError,
  saveCheckpoint,
  type TransformerSpec,
  writeFileAtomic,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import { type TrainConfig, train } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { sourceDir } from './layout.js'
import type { BenchProgress } from './progress.js'
import type { SourceRun } from './records.js'
import type { ResolvedSuite } from './suites.js'

/** The seed value of seed index `i`: initialisation, data order and growth randomness follow it. */
export const seedValue = (suite: ResolvedSuite, i: number) => suite.seed + i

/** The suite's training settings for `steps` steps whose schedule fully decays at the last one. */
export function trainConfig(suite: ResolvedSuite, steps: number, evalEvery = suite.evalEvery): TrainConfig {
  return {
    steps,
    optimizer: { kind: 'adamw', ...suite.optimizer },
    schedule: { ...suite.schedule, warmupSteps: Math.min(suite.schedule.warmupSteps, steps - 1) },
    clipNorm: suite.clipNorm,
    evalEvery,
    evalBatches: suite.evalBatches,
  }
}

export async function dataFor(suite: ResolvedSuite, spec: TransformerSpec, seed: number) {
  return openDataset(suite.data, spec, {
    batchSize: suite.batchSize,
    seqLen: suite.seqLen,
    seed,
    tokenizer: suite.tokenizer,
  })
}

export const isSourceDone = (out: string, seed: number) => existsSync(join(sourceDir(out, seed), 'done.json'))

export function loadSource(out: string, seed: number): { model: Model; run: SourceRun } {
  const dir = sourceDir(out, seed)
  return {
    model: loadCheckpoint(join(dir, 'model')).model,
    run: JSON.parse(readFileSync(join(dir, 'done.json'), 'utf8')),
  }
}

/** Pretrains seed `seed`'s source once per output directory; later runs and --resume reuse it. */
export async function pretrainSource(
  suite: ResolvedSuite,
  out: string,
  seed: number,
  progress: BenchProgress,
  stop: () => boolean,
): Promise<{ model: Model; run: SourceRun } | null> {
  if (isSourceDone(out, seed)) return loadSource(out, seed)
  const name = `s${seed}/source`
  const value = seedValue(suite, seed)
  const data = await dataFor(suite, suite.source, value + 100)
  const val = data.valBatches(suite.evalBatches)
  const init = initModel(suite.source, value + 100)
  progress.log(
    `${name}: pretraining for ${suite.sourceSteps} steps (charged only in the includingSource accounting)`,
  )
  progress.startRun(name, suite.sourceSteps)
  try {
    const r = await train({
      model: init,
      train: data.train,
      val,
      config: trainConfig(suite, suite.sourceSteps),
      log: (l) => progress.log(`  ${name} ${l}`),
      progress: false,
      onMetrics: (row) => progress.step(name, row.step, row.loss, row.valLoss),
      shouldStop: stop,
    })
    if (r.stoppedBy === 'interrupted') {
      disposeModel(r.model)
      return null
    }
    if (r.valLoss === null) throw new SproutError('INPUT_INVALID', `${name}: no validation loss was measured`)
    const dir = sourceDir(out, seed)
    await saveCheckpoint(join(dir, 'model'), r.model, {
      meta: { createdBy: `sprout bench compare: ${name}` },
    })
    const run: SourceRun = {
      steps: r.state.step,
      flops: r.state.flops,
      seconds: r.state.seconds,
      valLoss: r.valLoss,
    }
    writeFileAtomic(join(dir, 'done.json'), JSON.stringify(run))
    return { model: r.model, run }
  } finally {
    progress.endRun(name)
    disposeModel(init)
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}
