/**
 * Time per training step of a block-expanded decoder, every parameter trained vs LLaMA Pro's
 * recipe ("freeze": ["source"]: only the inserted blocks train). Prints median step times and the
 * FLOPs the trainer charges per step. Default backend: the fastest available (native here).
 *
 *   npx tsx packages/bench/bench/freeze-speed.ts [--steps 30]
 */
import { cpus, loadavg } from 'node:os'
import blockExpansion from '@sprout/block-expansion'
import {
  describeBackend,
  disposeModel,
  formatFlops,
  initModel,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  specSummary,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import { resolveFrozen, stepFlops, train } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { benchBackend } from './setup.js'

const stepsArg = process.argv.indexOf('--steps')
const steps = stepsArg >= 0 ? Number(process.argv[stepsArg + 1]) : 30
const warmup = 5

// The native backend when built (SPROUT_BACKEND forces one).
console.log(describeBackend(await benchBackend()))
console.log(
  `machine: ${cpus().length} cores, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
)
const source = initModel(
  parseSpec({
    family: 'decoder',
    vocabSize: 256,
    maxSeqLen: 128,
    dModel: 256,
    nLayers: 4,
    nHeads: 8,
    dFF: 1024,
  }),
  1,
)
const target = parseSpec({ ...source.spec, nLayers: 8 })
const grown = await blockExpansion.grow(
  source,
  target,
  quietGrowthContext(),
  parseOptions(blockExpansion, { every: 1 }),
)
disposeModel(source)
const names = Object.keys(grown.model.params)
console.log(
  `${specSummary(target)}, byte-level Moby Dick, batch 8 × 128 tokens, AdamW, ${steps} steps (median of the last ${steps - warmup})`,
)

const results: Record<string, { ms: number; flops: number }> = {}
for (const [label, freeze] of [
  ['all parameters', []],
  ['freeze ["source"]', ['source']],
  ['all parameters', []],
  ['freeze ["source"]', ['source']],
] as const) {
  const frozen = [...resolveFrozen(freeze, names, grown.newParams)]
  const data = await openDataset('moby-dick', target, { batchSize: 8, seqLen: 128, seed: 1 })
  const val = data.valBatches(1)
  const times: number[] = []
  const r = await train({
    model: grown.model,
    train: data.train,
    val,
    frozen,
    progress: false,
    config: {
      steps,
      optimizer: { kind: 'adamw', lr: 1e-3, weightDecay: 0.1 },
      schedule: { kind: 'constant' },
      evalEvery: steps,
      evalBatches: 1,
    },
    onMetrics: (row) => times.push((8 * 128) / row.tokensPerSecond),
  })
  const sorted = times.slice(warmup).sort((a, b) => a - b)
  const ms = 1000 * sorted[Math.floor(sorted.length / 2)]
  // The second round of each setting is reported (the first warms the allocator and kernels up).
  results[label] = { ms, flops: stepFlops(grown.model, data.train, 1, new Set(frozen)) }
  console.log(
    `  ${label.padEnd(18)} ${ms.toFixed(1)} ms/step, ${frozen.length} frozen tensors, charged ${formatFlops(results[label].flops)}/step`,
  )
  disposeModel(r.model)
  tf.dispose(val.flatMap((b) => Object.values(b)))
}
const a = results['all parameters']
const f = results['freeze ["source"]']
console.log(
  `frozen source: ${((1 - f.ms / a.ms) * 100).toFixed(1)}% less time per step (${a.ms.toFixed(1)} → ${f.ms.toFixed(1)} ms), ${((1 - f.flops / a.flops) * 100).toFixed(1)}% fewer charged FLOPs`,
)
disposeModel(grown.model)
