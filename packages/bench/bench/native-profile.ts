/**
 * Times one training step of a small GPT-2-style decoder under tf.profile and prints the kernels
 * that take the most time, so native work goes where the time is.
 *   npx tsx packages/bench/bench/native-profile.ts [--backend native|cpu] [--layers 2] [--d-model 128]
 *     [--heads 4] [--seq-len 64] [--batch 8] [--vocab 256] [--top 20]
 */
import { parseArgs } from 'node:util'
import { sproutBackend } from '@sprout/backend-native'
import { describeBackend, selectBackend } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { throughputTrainer } from '../src/index.js'

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'native' },
    layers: { type: 'string', default: '2' },
    'd-model': { type: 'string', default: '128' },
    heads: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '64' },
    batch: { type: 'string', default: '8' },
    vocab: { type: 'string', default: '256' },
    top: { type: 'string', default: '20' },
  },
})
const n = (k: keyof typeof values) => Number(values[k])
console.log(describeBackend(await selectBackend(values.backend, { candidates: [sproutBackend] })))
// The model, optimizer and batch of `sprout bench throughput`.
const { step } = throughputTrainer({
  layers: n('layers'),
  dModel: n('d-model'),
  heads: n('heads'),
  seqLen: n('seq-len'),
  batch: n('batch'),
  vocab: n('vocab'),
})

for (let i = 0; i < 2; i++) step() // warm-up: optimizer slots, first-call costs
const start = performance.now()
const steps = 3
for (let i = 0; i < steps; i++) step()
const stepMs = (performance.now() - start) / steps
const info = await tf.profile(step)
const byKernel = new Map<string, { ms: number; calls: number }>()
let total = 0
for (const k of info.kernels) {
  const ms = k.kernelTimeMs as number
  total += ms
  const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 }
  e.ms += ms
  e.calls++
  byKernel.set(k.name, e)
}
console.log(
  `step ${stepMs.toFixed(1)} ms (mean of ${steps}); kernels sum to ${total.toFixed(1)} ms under tf.profile`,
)
console.log('kernel'.padEnd(24), 'ms'.padStart(8), 'share'.padStart(7), 'calls'.padStart(6))
for (const [name, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, n('top')))
  console.log(
    name.padEnd(24),
    e.ms.toFixed(1).padStart(8),
    `${((100 * e.ms) / total).toFixed(1)}%`.padStart(7),
    String(e.calls).padStart(6),
  )
