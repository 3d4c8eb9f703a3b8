/**
 * LEMON growth time and exactness on a few sizes (tfjs cpu backend unless SPROUT_BACKEND names another).
 *
 *   npx tsx plugins/lemon/bench/grow.ts
 */
import {
  backendFromModule,
  describeBackend,
  formatFlops,
  initModel,
  maxAbsLogitDiff,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  selectBackend,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import lemon from '../src/index.js'

const cases = [
  {
    name: '2-layer d=128 -> 4-layer d=256 (decoder)',
    from: { nLayers: 2, dModel: 128, nHeads: 4, dFF: 512 },
    to: { nLayers: 4, dModel: 256, nHeads: 8, dFF: 1024 },
  },
  {
    name: '2-layer d=128 -> 4-layer d=200 (indivisible)',
    from: { nLayers: 2, dModel: 128, nHeads: 4, dFF: 512 },
    to: { nLayers: 4, dModel: 200, nHeads: 6, headDim: 32, dFF: 800 },
  },
  {
    name: '6-layer d=256 -> 12-layer d=512 (decoder)',
    from: { nLayers: 6, dModel: 256, nHeads: 8, dFF: 1024 },
    to: { nLayers: 12, dModel: 512, nHeads: 16, dFF: 2048 },
  },
]

console.log(
  describeBackend(
    await selectBackend(process.env.SPROUT_BACKEND ?? 'cpu', {
      candidates: [backendFromModule('native', '@sprout/backend-native')],
    }),
  ),
)
console.log(`backend: ${tf.getBackend()}`)
for (const c of cases) {
  const base = { family: 'decoder', vocabSize: 512, maxSeqLen: 64 }
  const s = parseSpec({ ...base, ...c.from })
  const t = parseSpec({
    ...base,
    ...c.to,
    headDim: s.headDim,
    normEps: (s.normEps * (Math.floor(c.to.dModel / c.from.dModel) * c.from.dModel)) / c.to.dModel,
  })
  const source = initModel(s, 1)
  const ctx = quietGrowthContext()
  const start = performance.now()
  const r = await lemon.grow(source, t, ctx, parseOptions(lemon, { verify: 'never' }))
  const ms = performance.now() - start
  const diff = maxAbsLogitDiff(source, r.model, { seqLen: 16 })
  console.log(
    `${c.name}: grow ${ms.toFixed(0)} ms, growth ${formatFlops(r.report.growthFlops)}, max |Δlogits| ${diff.toExponential(2)}`,
  )
  tf.dispose(Object.values(r.model.params))
  tf.dispose(Object.values(source.params))
}
