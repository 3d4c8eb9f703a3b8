/**
 * Net2Net growth time on a realistic size, and FPI's exactness over a seeded matrix of random
 * specs (tfjs cpu backend unless SPROUT_BACKEND names another).
 *
 *   npx tsx plugins/net2net/bench/grow.ts
 */
import {
  backendFromModule,
  describeBackend,
  disposeModel,
  initModel,
  maxAbsLogitDiff,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  SeededRandom,
  selectBackend,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import net2net from '../src/index.js'

const ctx = quietGrowthContext

console.log(
  describeBackend(
    await selectBackend(process.env.SPROUT_BACKEND ?? 'cpu', {
      candidates: [backendFromModule('native', '@sprout/backend-native')],
    }),
  ),
)

const base = { family: 'decoder', vocabSize: 512, maxSeqLen: 64 }
const small = parseSpec({ ...base, nLayers: 6, dModel: 256, nHeads: 8, dFF: 1024 })
const big = parseSpec({ ...base, nLayers: 12, dModel: 512, nHeads: 16, headDim: 32, dFF: 2048 })
const source = initModel(small, 1)
for (const raw of [{}, { symmetryNoise: 0.01 }, { init: 'aki' }, { depth: 'stack' }]) {
  const options = parseOptions(net2net, raw)
  disposeModel((await net2net.grow(source, big, ctx(), options)).model) // warm-up
  const start = performance.now()
  const r = await net2net.grow(source, big, ctx(), options)
  const ms = performance.now() - start
  const diff = maxAbsLogitDiff(source, r.model, { seqLen: 16 })
  console.log(
    `6-layer d=256 -> 12-layer d=512 (${JSON.stringify(options)}): grow ${ms.toFixed(0)} ms, max |Δlogits| ${diff.toExponential(2)}`,
  )
  disposeModel(r.model)
}
disposeModel(source)

// FPI over random specs: families × norms × placements × activations × biases × tying × widths.
const r = new SeededRandom(7)
const families = ['decoder', 'encoder', 'vit'] as const
let worst = 0
let worstNoisy = 0
let count = 0
for (let i = 0; i < 48; i++) {
  const family = families[i % 3]
  const post = r.uniform() < 0.25
  const tie = family !== 'vit' && r.uniform() < 0.5
  const common = {
    family,
    norm: r.uniform() < 0.5 ? 'layernorm' : 'rmsnorm',
    normPlacement: post ? 'post' : 'pre',
    activation: (['gelu', 'swiglu', 'relu', 'gelu_tanh'] as const)[r.int(4)],
    bias: r.uniform() < 0.5,
    ...(family === 'vit'
      ? { vocabSize: 0, maxSeqLen: 17, image: { size: 16, patch: 4, channels: 3, classes: 10 } }
      : {
          vocabSize: 256,
          maxSeqLen: 32,
          tieEmbeddings: tie,
          ...(family === 'encoder' ? { mlmHead: tie } : {}),
        }),
  }
  const s = parseSpec({ ...common, nLayers: 2, dModel: 32, nHeads: 4, headDim: 8, dFF: 64 })
  const t = parseSpec({
    ...common,
    nLayers: post ? 2 : 2 + r.int(3),
    dModel: 32 * (1 + r.int(3)),
    nHeads: 4 + r.int(5),
    headDim: 8,
    dFF: 64 + r.int(65),
  })
  const m = initModel(s, i)
  const perturbed = tf.tidy(() =>
    Object.fromEntries(
      Object.entries(m.params).map(([n, p]) => [
        n,
        tf.add(p, tf.randomNormal(p.shape, 0, 0.1, 'float32', i)),
      ]),
    ),
  )
  disposeModel(m)
  const src = { spec: s, params: perturbed }
  const g = await net2net.grow(src, t, ctx(i), parseOptions(net2net, {}))
  worst = Math.max(worst, maxAbsLogitDiff(src, g.model, { seqLen: 16 }))
  const noisy = await net2net.grow(src, t, ctx(i), parseOptions(net2net, { symmetryNoise: 0.01 }))
  worstNoisy = Math.max(worstNoisy, maxAbsLogitDiff(src, noisy.model, { seqLen: 16 }))
  count++
  disposeModel(noisy.model)
  disposeModel(g.model)
  disposeModel(src)
}
console.log(
  `FPI over ${count} random specs: worst max |Δlogits| ${worst.toExponential(2)}; with symmetryNoise 0.01: ${worstNoisy.toExponential(2)}`,
)
