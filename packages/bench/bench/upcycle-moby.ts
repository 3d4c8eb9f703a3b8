/**
 * Sparse upcycling on Moby Dick (byte-level tokens), with the shared trainer:
 *   1. pretrain a dense decoder for PRETRAIN steps (AdamW, constant learning rate after warm-up);
 *   2. from that checkpoint, continue (a) the dense model for CONTINUE steps and (b) its upcycled
 *      MoE (dense optimizer moments copied into every expert) for the same training FLOPs;
 *   3. print both validation-loss curves against training FLOPs.
 *
 *   npx tsx packages/bench/bench/upcycle-moby.ts
 *   env: PRETRAIN (300), CONTINUE (300), DMODEL (96), LAYERS (4), BATCH (8), SEQ (64), LR (2e-3),
 *        EXPERTS (8), TOPK (2), EVAL_EVERY (50)
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  cloneModel,
  exampleFlops,
  formatFlops,
  initModel,
  loadCheckpoint,
  type Model,
  type Params,
  parseOptions,
  parseSpec,
  quietGrowthContext,
} from '@sprout/core'
import { byteTokenizer, CausalBatches, causalValBatches, loadText, splitTokens } from '@sprout/data'
import { CHECKPOINT_DIR, type MetricsRow, train } from '@sprout/trainer'
import upcycle, { upcycleOptimizerState } from '@sprout/upcycle'
import * as tf from '@tensorflow/tfjs'
import { envNumber as env } from './setup.js'

const PRETRAIN = env('PRETRAIN', 300)
const CONTINUE = env('CONTINUE', 300)
const D = env('DMODEL', 96)
const LAYERS = env('LAYERS', 4)
const BATCH = env('BATCH', 8)
const SEQ = env('SEQ', 64)
const LR = env('LR', 2e-3)
const EXPERTS = env('EXPERTS', 8)
const TOPK = env('TOPK', 2)
const EVAL_EVERY = env('EVAL_EVERY', 50)

await tf.setBackend(process.env.SPROUT_BACKEND ?? 'cpu')
const tokens = byteTokenizer().encode(loadText('moby-dick').text)
const split = splitTokens(Int32Array.from(tokens), SEQ)
const val = causalValBatches(split.val, 16, SEQ, 8)
const spec = parseSpec({
  family: 'decoder',
  vocabSize: 256,
  maxSeqLen: SEQ,
  dModel: D,
  nLayers: LAYERS,
  nHeads: 4,
  dFF: 4 * D,
})
const optimizer = { kind: 'adamw' as const, lr: LR, weightDecay: 0.01 }
const work = mkdtempSync(join(tmpdir(), 'sprout-upcycle-moby-'))

async function run(
  label: string,
  model: Model,
  steps: number,
  seed: number,
  opts: { optimizerState?: Params; flops?: number; warmup?: number } = {},
) {
  const t0 = performance.now()
  const rows: MetricsRow[] = []
  const r = await train({
    model,
    train: new CausalBatches(split.train, BATCH, SEQ, seed),
    val,
    config: {
      steps,
      optimizer,
      schedule: { kind: 'constant', warmupSteps: opts.warmup ?? 0 },
      clipNorm: 1,
      evalEvery: EVAL_EVERY,
      evalBatches: val.length,
      ...(opts.flops ? { budget: { flops: opts.flops } } : {}),
    },
    outDir: join(work, label),
    optimizerState: opts.optimizerState,
    progress: false,
    onMetrics: (row) => {
      if (row.valLoss === null) return
      rows.push(row)
      console.log(
        `  ${label} step ${row.step}: ${formatFlops(row.flops)}, val loss ${row.valLoss.toFixed(4)}, train loss ${row.loss.toFixed(4)}`,
      )
    },
  })
  const seconds = (performance.now() - t0) / 1000
  console.log(
    `${label}: ${r.state.step} steps, ${formatFlops(r.state.flops)}, ${seconds.toFixed(0)} s (${((1000 * seconds) / r.state.step).toFixed(0)} ms/step), final val loss ${r.valLoss?.toFixed(4)}`,
  )
  return { result: r, rows, seconds }
}

console.log(
  `backend ${tf.getBackend()}; Moby Dick bytes (${split.train.length} train / ${split.val.length} val tokens); batch ${BATCH}x${SEQ}; lr ${LR} constant`,
)
console.log(`dense: L${LAYERS} d${D} ff${4 * D}; MoE: ${EXPERTS} experts, top-${TOPK}, every other layer`)

// 1. Dense pretraining.
const pre = await run('pretrain', initModel(spec, 1), PRETRAIN, 1, { warmup: Math.min(50, PRETRAIN / 5) })
const saved = loadCheckpoint(join(work, 'pretrain', CHECKPOINT_DIR))
const dense = saved.model
const moments = saved.state ?? {}
tf.dispose(Object.values(pre.result.model.params))

// 2a. Dense continuation.
const denseStep = exampleFlops(spec, SEQ).total * BATCH
const budget = denseStep * CONTINUE
const cont = await run('dense continuation', cloneModel(dense), CONTINUE, 2, {
  optimizerState: moments,
})

// 2b. Upcycled continuation at the same FLOPs.
const ctx = quietGrowthContext(3)
const up = await upcycle.grow(dense, spec, ctx, parseOptions(upcycle, { experts: EXPERTS, topK: TOPK }))
console.log(
  `upcycled: max |Δlogits| ${up.report.maxAbsLogitDiff?.toExponential(2)}, +${up.report.details.addedParams} parameters`,
)
const moeStep = exampleFlops(up.model.spec, SEQ).total * BATCH
const moeSteps = Math.floor(budget / moeStep)
const moe = await run('upcycled continuation', up.model, moeSteps, 2, {
  optimizerState: upcycleOptimizerState(moments, up.model.spec),
})

console.log(
  `\nFLOPs per step: dense ${formatFlops(denseStep)}, MoE ${formatFlops(moeStep)} (${(moeStep / denseStep).toFixed(2)}x); equal budget ${formatFlops(budget)}`,
)
console.log('val loss vs training FLOPs since the dense checkpoint:')
console.log('  FLOPs        dense     upcycled')
const at = (rows: MetricsRow[], f: number) => rows.filter((r) => r.flops <= f * 1.0001).at(-1)?.valLoss
for (const f of [...new Set([...cont.rows, ...moe.rows].map((r) => r.flops))].sort((a, b) => a - b))
  console.log(
    `  ${formatFlops(f).padEnd(12)} ${(at(cont.rows, f)?.toFixed(4) ?? '-').padEnd(9)} ${at(moe.rows, f)?.toFixed(4) ?? '-'}`,
  )
console.log(
  `at equal FLOPs: dense ${cont.result.valLoss?.toFixed(4)} (${cont.result.state.step} steps), upcycled ${moe.result.valLoss?.toFixed(4)} (${moe.result.state.step} steps); wall time ${cont.seconds.toFixed(0)} s vs ${moe.seconds.toFixed(0)} s`,
)
tf.dispose([
  ...Object.values(cont.result.model.params),
  ...Object.values(moe.result.model.params),
  ...Object.values(dense.params),
  ...Object.values(moments),
])
tf.dispose(val.flatMap((b) => [b.inputs, b.targets]))
rmSync(work, { recursive: true, force: true })
