/**
 * Training-step time of a mixture-of-experts model against the dense model of the same width
 * (tfjs cpu backend unless SPROUT_BACKEND says otherwise). Prints, for the MLP layer alone and
 * for a whole model, the step-time ratio and the time per analytic FLOP ratio.
 *
 *   npx tsx packages/core/bench/moe.ts
 */
import * as tf from '@tensorflow/tfjs'
import {
  denseMlp,
  exampleFlops,
  initModel,
  loss,
  moeMlp,
  type Params,
  parseSpec,
  type TransformerSpec,
} from '../src/index.js'

const E = 8
const K = 2
const REPEATS = Number(process.env.REPEATS ?? 6)

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Median milliseconds of one forward + backward of `f` w.r.t. `vars`, after one warm-up. */
function time(f: () => tf.Scalar, vars: tf.Variable[]): number {
  const once = () => {
    const { value, grads } = tf.variableGrads(f, vars)
    // Reading one gradient forces the whole backward pass.
    tf.dispose([value, ...Object.values(grads)])
  }
  once()
  const ms: number[] = []
  for (let i = 0; i < REPEATS; i++) {
    const t0 = performance.now()
    once()
    ms.push(performance.now() - t0)
  }
  return median(ms)
}

function variables(params: Params): Record<string, tf.Variable> {
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [k, tf.variable(v, true, `${k}#${Math.random()}`)]),
  )
}

function report(name: string, denseMs: number, moeMs: number, denseFlops: number, moeFlops: number): void {
  const timeRatio = moeMs / denseMs
  const flopRatio = moeFlops / denseFlops
  console.log(
    `${name}: dense ${denseMs.toFixed(1)} ms, MoE ${moeMs.toFixed(1)} ms, time ratio ${timeRatio.toFixed(2)}x, ` +
      `FLOP ratio ${flopRatio.toFixed(2)}x, time per FLOP ratio ${(timeRatio / flopRatio).toFixed(2)}x`,
  )
}

await tf.setBackend(process.env.SPROUT_BACKEND ?? 'cpu')
console.log(`backend: ${tf.getBackend()}, ${E} experts, top-${K}, capacity factor 1.25, median of ${REPEATS}`)

// 1. The MLP layer alone: N tokens of width D.
for (const [D, F, N] of [
  [128, 512, 512],
  [256, 1024, 512],
]) {
  const base = { family: 'decoder', vocabSize: 256, maxSeqLen: 64, dModel: D, nLayers: 1, nHeads: 4, dFF: F }
  const moeSpec = parseSpec({ ...base, moe: { experts: E, topK: K, layers: [0] } })
  const dense = initModel(parseSpec(base), 1)
  const moe = initModel(moeSpec, 1)
  const x = tf.randomNormal([N, D], 0, 1, 'float32', 2)
  const dv = variables(dense.params)
  const mv = variables(moe.params)
  const denseMs = time(
    () => tf.sum(tf.square(denseMlp(x, dense.spec, dv, 'layers.0.mlp'))) as tf.Scalar,
    Object.values(dv).filter((v) => v.name.startsWith('layers.0.mlp')),
  )
  const moeMs = time(
    () => {
      const r = moeMlp(x, moeSpec, mv, 'layers.0.mlp', true)
      return tf.addN([tf.sum(tf.square(r.output)), r.loadBalance, r.zLoss]) as tf.Scalar
    },
    Object.values(mv).filter((v) => v.name.startsWith('layers.0.mlp')),
  )
  const mlpFlops = 2 * N * 2 * D * F
  report(`MLP layer D=${D} F=${F} N=${N}`, denseMs, moeMs, mlpFlops, K * mlpFlops + 2 * N * D * E)
  tf.dispose([x, ...Object.values(dv), ...Object.values(mv)])
  tf.dispose([...Object.values(dense.params), ...Object.values(moe.params)])
}

// 2. A whole decoder training step, every other layer MoE (the upcycling default).
function modelStep(spec: TransformerSpec, B: number, T: number): number {
  const model = initModel(spec, 3)
  const vars = variables(model.params)
  const ids = tf.tensor2d(
    Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % spec.vocabSize),
    [B, T],
    'int32',
  )
  const ms = time(() => loss({ spec, params: vars }, { inputs: ids, targets: ids }), Object.values(vars))
  tf.dispose([ids, ...Object.values(vars), ...Object.values(model.params)])
  return ms
}
const B = 8
const T = 64
const base = { family: 'decoder', vocabSize: 256, maxSeqLen: T, dModel: 128, nLayers: 4, nHeads: 4, dFF: 512 }
const denseSpec = parseSpec(base)
for (const layers of [
  [1, 3],
  [0, 1, 2, 3],
]) {
  const moeSpec = parseSpec({ ...base, moe: { experts: E, topK: K, layers } })
  const denseMs = modelStep(denseSpec, B, T)
  const moeMs = modelStep(moeSpec, B, T)
  report(
    `decoder step L4 d128 B${B} T${T}, MoE layers [${layers}]`,
    denseMs,
    moeMs,
    exampleFlops(denseSpec, T).total,
    exampleFlops(moeSpec, T).total,
  )
}
