/**
 * LiGO and Mango from their function-preserving start, on `quick`'s shapes: a byte-level Moby
 * Dick decoder 2L d128 (4 heads, dFF 512, T 64) trained SOURCE_STEPS steps, grown to 4L d256
 * (8 heads, dFF 1024) with FIT_STEPS fitting steps. Prints, per method: max |Δ logits| and
 * validation loss at fitting step 0, validation loss after fitting, seconds and growth FLOPs;
 * then (COST=1) the cost of each method's default grow (its default options, the CLI's batch).
 *
 *   npx tsx packages/bench/bench/learned-fp-init.ts
 *   env: SOURCE_STEPS (150), FIT_STEPS (50), BATCH (8), SEQ (64), VAL_BATCHES (8), COST (1),
 *        METHODS (ligo,mango), SPROUT_BACKEND (fastest available)
 */
import {
  type Batch,
  type GrowthContext,
  type GrowthOperator,
  type Model,
  maxAbsLogitDiff,
  parseSpec,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import ligo from '@sprout/ligo'
import mango from '@sprout/mango'
import { pretrainModel, quietFitContext } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { benchBackend, envNumber as env, meanValLoss } from './setup.js'

const SOURCE_STEPS = env('SOURCE_STEPS', 150)
const FIT_STEPS = env('FIT_STEPS', 50)
const BATCH = env('BATCH', 8)
const SEQ = env('SEQ', 64)
const VAL_BATCHES = env('VAL_BATCHES', 8)
const COST = env('COST', 1) === 1
const METHODS = (process.env.METHODS ?? 'ligo,mango').split(',')

const arch = { family: 'decoder', vocabSize: 256, maxSeqLen: 64 } as const
const sourceSpec = parseSpec({ ...arch, dModel: 128, nLayers: 2, nHeads: 4, dFF: 512 })
const targetSpec = parseSpec({ ...arch, dModel: 256, nLayers: 4, nHeads: 8, dFF: 1024 })
const operators: Record<string, GrowthOperator<any>> = { ligo, mango }

const valLoss = (model: Model, val: Batch[]) => meanValLoss(model, val, { training: false })

async function pretrain(): Promise<Model> {
  const data = await openDataset('moby-dick', sourceSpec, { batchSize: BATCH, seqLen: SEQ, seed: 100 })
  return (await pretrainModel(sourceSpec, data.train, { steps: SOURCE_STEPS, learningRate: 3e-3, seed: 100 }))
    .model
}

async function context(withData: boolean): Promise<GrowthContext> {
  if (!withData) return quietFitContext(3)
  const data = await openDataset('moby-dick', targetSpec, { batchSize: BATCH, seqLen: SEQ, seed: 200 })
  return quietFitContext(3, data.train)
}

async function grow(name: string, options: Record<string, unknown>) {
  const op = operators[name]
  const parsed = op.options.parse(options)
  const ctx = await context(parsed.steps > 0)
  const t0 = performance.now()
  const result = await op.grow(source, targetSpec, ctx, parsed)
  return { ...result, seconds: (performance.now() - t0) / 1000, parsed }
}

// The native backend when built (SPROUT_BACKEND forces one).
const backend = await benchBackend()
const valData = await openDataset('moby-dick', sourceSpec, { batchSize: BATCH, seqLen: SEQ, seed: 100 })
const val = valData.valBatches(VAL_BATCHES)
console.log(
  `backend ${backend.name}; batch ${BATCH}x${SEQ}; source ${SOURCE_STEPS} steps; fit ${FIT_STEPS} steps; val ${VAL_BATCHES} batches`,
)
const t0 = performance.now()
const source = await pretrain()
const sourceLoss = valLoss(source, val)
console.log(
  `source 2L d128: val loss ${sourceLoss.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
)

for (const name of METHODS) {
  const start = await grow(name, { steps: 0 })
  const diff = maxAbsLogitDiff(source, start.model)
  const startLoss = valLoss(start.model, val)
  tf.dispose(Object.values(start.model.params))
  const fitted = await grow(name, { steps: FIT_STEPS })
  const fittedLoss = valLoss(fitted.model, val)
  tf.dispose(Object.values(fitted.model.params))
  console.log(
    `${name}: step 0 max|Δ logits| ${diff.toExponential(2)}, val loss ${startLoss.toFixed(4)}; ` +
      `after ${FIT_STEPS} fitting steps val loss ${fittedLoss.toFixed(4)} (source ${sourceLoss.toFixed(4)}, ` +
      `${fittedLoss <= sourceLoss ? 'at or below' : 'ABOVE'}); ${fitted.seconds.toFixed(1)} s, ` +
      `${(fitted.report.growthFlops / 1e12).toFixed(3)} TFLOP, ${fitted.report.details.operatorParameters} operator parameters`,
  )
}

if (COST) {
  const costs: Record<string, { seconds: number; flops: number }> = {}
  for (const name of METHODS) {
    const r = await grow(name, {})
    tf.dispose(Object.values(r.model.params))
    costs[name] = { seconds: r.seconds, flops: r.report.growthFlops }
    const d = r.report.details
    console.log(
      `${name} default grow (${JSON.stringify({ steps: r.parsed.steps, ...(r.parsed.rank ? { rank: r.parsed.rank } : {}) })}): ` +
        `${r.seconds.toFixed(1)} s, ${(r.report.growthFlops / 1e12).toFixed(3)} TFLOP ` +
        `(per step ${((d.fitFlopsPerStep as number) / 1e9).toFixed(2)} GFLOP: operator forward ${((d.materialiseFlops as number) / 1e9).toFixed(2)} + backward ${((d.gradientFlops as number) / 1e9).toFixed(2)})`,
    )
  }
  if (costs.ligo && costs.mango)
    console.log(
      `mango / ligo default grow: ${(costs.mango.flops / costs.ligo.flops).toFixed(2)}x FLOPs, ${(costs.mango.seconds / costs.ligo.seconds).toFixed(2)}x seconds`,
    )
}
tf.dispose(val.flatMap((b) => Object.values(b)))
