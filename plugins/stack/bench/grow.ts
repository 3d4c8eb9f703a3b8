/**
 * Stacking growth time, and masked stacking's exactness at mask 0 (tfjs cpu backend unless
 * SPROUT_BACKEND names another).
 *
 *   npx tsx plugins/stack/bench/grow.ts
 */
import {
  applyMask,
  backendFromModule,
  describeBackend,
  disposeModel,
  initModel,
  maxAbsLogitDiff,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  selectBackend,
} from '@sprout/core'
import stack from '../src/index.js'

const base = { family: 'decoder', vocabSize: 512, maxSeqLen: 64, dModel: 256, nHeads: 8, dFF: 1024 }
const cases = [
  { name: '6-layer d=256 -> 12-layer (stackbert)', from: 6, to: 12, options: { mode: 'stackbert' } },
  { name: '6-layer d=256 -> 24-layer (gstack, g=4)', from: 6, to: 24, options: { mode: 'gstack' } },
  { name: '6-layer d=256 -> 12-layer (interleave)', from: 6, to: 12, options: { mode: 'interleave' } },
  { name: '6-layer d=256 -> 12-layer (masked)', from: 6, to: 12, options: { mode: 'masked' } },
]

console.log(
  describeBackend(
    await selectBackend(process.env.SPROUT_BACKEND ?? 'cpu', {
      candidates: [backendFromModule('native', '@sprout/backend-native')],
    }),
  ),
)
for (const c of cases) {
  const source = initModel(parseSpec({ ...base, nLayers: c.from }), 1)
  const target = parseSpec({ ...base, nLayers: c.to })
  const ctx = quietGrowthContext()
  const options = parseOptions(stack, c.options)
  await stack.grow(source, target, ctx, options).then((r) => disposeModel(r.model)) // warm-up
  const start = performance.now()
  const r = await stack.grow(source, target, ctx, options)
  const ms = performance.now() - start
  const view = applyMask(r.model, r.mask, 0)
  const diff = maxAbsLogitDiff(source, view, { seqLen: 16 })
  console.log(
    `${c.name}: grow ${ms.toFixed(0)} ms, max |Δlogits| vs source${r.mask ? ' at mask 0' : ''} ${diff.toExponential(2)}`,
  )
  if (view !== r.model) for (const n of r.mask!.params) view.params[n].dispose()
  disposeModel(r.model)
  disposeModel(source)
}
