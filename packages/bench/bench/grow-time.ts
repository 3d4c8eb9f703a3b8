/**
 * Growth time and exactness of a function-preserving method on realistic sizes (tfjs cpu
 * backend unless SPROUT_BACKEND names another): per case, the grow's wall time and the max
 * |Δlogits| of the grown model against its source (stacking's masked mode: at mask 0).
 *   net2net: 6-layer d=256 -> 12-layer d=512 under four option sets (warmed up), then FPI's
 *            exactness over a seeded matrix of 48 random specs;
 *   stack:   6-layer d=256 -> 12 or 24 layers in each mode (warmed up);
 *   lemon:   three decoder sizes, verification off (one cold grow each, with its growth FLOPs).
 *
 *   npx tsx packages/bench/bench/grow-time.ts --method net2net|stack|lemon
 */
import { parseArgs } from 'node:util'
import {
  applyMask,
  describeBackend,
  disposeModel,
  formatFlops,
  type GrowthOperator,
  initModel,
  type Model,
  maxAbsLogitDiff,
  parseOptions,
  parseSpec,
  quietGrowthContext,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import lemon from '@sprout/lemon'
import net2net from '@sprout/net2net'
import stack from '@sprout/stack'
import * as tf from '@tensorflow/tfjs'
import { benchBackend } from './setup.js'

interface Case {
  name: string
  source: TransformerSpec
  target: TransformerSpec
  options: Record<string, unknown>
}

interface Method {
  operator: GrowthOperator<any>
  cases: Case[]
  /** Grow once untimed first, so the timed grow does not pay for kernel compilation. */
  warmUp: boolean
  /** The line printed per case, from the measured numbers. */
  line: (c: Case, ms: number, diff: number, growthFlops: number, masked: boolean) => string
  /** What the method measures besides the timed cases. */
  after?: () => Promise<void>
}

const decoder = { family: 'decoder', vocabSize: 512, maxSeqLen: 64 }

function stackCase(name: string, from: number, to: number, mode: string): Case {
  const base = { ...decoder, dModel: 256, nHeads: 8, dFF: 1024 }
  return {
    name,
    source: parseSpec({ ...base, nLayers: from }),
    target: parseSpec({ ...base, nLayers: to }),
    options: { mode },
  }
}

/** LEMON's target keeps the source's head size and rescales normEps with the width. */
function lemonCase(
  name: string,
  from: { nLayers: number; dModel: number; nHeads: number; dFF: number },
  to: { nLayers: number; dModel: number; nHeads: number; dFF: number; headDim?: number },
): Case {
  const source = parseSpec({ ...decoder, ...from })
  const target = parseSpec({
    ...decoder,
    ...to,
    headDim: source.headDim,
    normEps: (source.normEps * (Math.floor(to.dModel / from.dModel) * from.dModel)) / to.dModel,
  })
  return { name, source, target, options: { verify: 'never' } }
}

const net2netSmall = parseSpec({ ...decoder, nLayers: 6, dModel: 256, nHeads: 8, dFF: 1024 })
const net2netBig = parseSpec({ ...decoder, nLayers: 12, dModel: 512, nHeads: 16, headDim: 32, dFF: 2048 })

const methods: Record<string, Method> = {
  net2net: {
    operator: net2net,
    cases: [{}, { symmetryNoise: 0.01 }, { init: 'aki' }, { depth: 'stack' }].map((options) => ({
      name: '6-layer d=256 -> 12-layer d=512',
      source: net2netSmall,
      target: net2netBig,
      options,
    })),
    warmUp: true,
    line: (c, ms, diff) =>
      `${c.name} (${JSON.stringify(parseOptions(net2net, c.options))}): grow ${ms.toFixed(0)} ms, max |Δlogits| ${diff.toExponential(2)}`,
    after: net2netRandomSpecs,
  },
  stack: {
    operator: stack,
    cases: [
      stackCase('6-layer d=256 -> 12-layer (stackbert)', 6, 12, 'stackbert'),
      stackCase('6-layer d=256 -> 24-layer (gstack, g=4)', 6, 24, 'gstack'),
      stackCase('6-layer d=256 -> 12-layer (interleave)', 6, 12, 'interleave'),
      stackCase('6-layer d=256 -> 12-layer (masked)', 6, 12, 'masked'),
    ],
    warmUp: true,
    line: (c, ms, diff, _flops, masked) =>
      `${c.name}: grow ${ms.toFixed(0)} ms, max |Δlogits| vs source${masked ? ' at mask 0' : ''} ${diff.toExponential(2)}`,
  },
  lemon: {
    operator: lemon,
    cases: [
      lemonCase(
        '2-layer d=128 -> 4-layer d=256 (decoder)',
        { nLayers: 2, dModel: 128, nHeads: 4, dFF: 512 },
        { nLayers: 4, dModel: 256, nHeads: 8, dFF: 1024 },
      ),
      lemonCase(
        '2-layer d=128 -> 4-layer d=200 (indivisible)',
        { nLayers: 2, dModel: 128, nHeads: 4, dFF: 512 },
        { nLayers: 4, dModel: 200, nHeads: 6, headDim: 32, dFF: 800 },
      ),
      lemonCase(
        '6-layer d=256 -> 12-layer d=512 (decoder)',
        { nLayers: 6, dModel: 256, nHeads: 8, dFF: 1024 },
        { nLayers: 12, dModel: 512, nHeads: 16, dFF: 2048 },
      ),
    ],
    warmUp: false,
    line: (c, ms, diff, flops) =>
      `${c.name}: grow ${ms.toFixed(0)} ms, growth ${formatFlops(flops)}, max |Δlogits| ${diff.toExponential(2)}`,
  },
}

/** FPI over random specs: families × norms × placements × activations × biases × tying × widths. */
async function net2netRandomSpecs() {
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
    const g = await net2net.grow(src, t, quietGrowthContext(i), parseOptions(net2net, {}))
    worst = Math.max(worst, maxAbsLogitDiff(src, g.model, { seqLen: 16 }))
    const noisy = await net2net.grow(
      src,
      t,
      quietGrowthContext(i),
      parseOptions(net2net, { symmetryNoise: 0.01 }),
    )
    worstNoisy = Math.max(worstNoisy, maxAbsLogitDiff(src, noisy.model, { seqLen: 16 }))
    count++
    disposeModel(noisy.model)
    disposeModel(g.model)
    disposeModel(src)
  }
  console.log(
    `FPI over ${count} random specs: worst max |Δlogits| ${worst.toExponential(2)}; with symmetryNoise 0.01: ${worstNoisy.toExponential(2)}`,
  )
}

const { values } = parseArgs({ options: { method: { type: 'string' } } })
const method = methods[values.method ?? '']
if (!method) {
  console.error(`grow-time: pass --method ${Object.keys(methods).join('|')} (the method to time)`)
  process.exit(2)
}

console.log(describeBackend(await benchBackend(process.env.SPROUT_BACKEND ?? 'cpu')))
// One source per source spec (net2net's cases share theirs), disposed after its last case.
const sources = new Map<TransformerSpec, Model>()
for (const [i, c] of method.cases.entries()) {
  const source = sources.get(c.source) ?? initModel(c.source, 1)
  sources.set(c.source, source)
  const options = parseOptions(method.operator, c.options)
  // A fresh seed-0 context per grow: the warm-up leaves the timed grow's random draws unchanged.
  if (method.warmUp)
    disposeModel((await method.operator.grow(source, c.target, quietGrowthContext(), options)).model)
  const start = performance.now()
  const r = await method.operator.grow(source, c.target, quietGrowthContext(), options)
  const ms = performance.now() - start
  const view = applyMask(r.model, r.mask, 0)
  const diff = maxAbsLogitDiff(source, view, { seqLen: 16 })
  console.log(method.line(c, ms, diff, r.report.growthFlops, Boolean(r.mask)))
  if (view !== r.model) for (const n of r.mask!.params) view.params[n].dispose()
  disposeModel(r.model)
  if (!method.cases.slice(i + 1).some((later) => later.source === c.source)) disposeModel(source)
}
await method.after?.()
