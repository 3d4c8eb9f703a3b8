import {
  type Batch,
  computeLoss,
  type GrowthOperator,
  initModel,
  type Model,
  maxAbsLogitDiff,
  type Params,
  paramTable,
  SeededRandom,
  type TransformerSpec,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { fitContext, pretrainedModel } from './context.js'
import { disposeBatch } from './fit.js'
import { type BatchSource, markovBatches } from './synthetic.js'

/** Mean cross-entropy of a model over fixed batches. */
export function meanLoss(model: Model, batches: Batch[]): number {
  let sum = 0
  for (const b of batches) sum += tf.tidy(() => computeLoss(model, b).ce.dataSync()[0])
  return sum / batches.length
}

/** A source pretrained 60 steps on a Markov chain, so a learned operator has something to transfer. */
export function markovPretrained(spec: TransformerSpec): Promise<Model> {
  return pretrainedModel(spec, markovBatches(spec, 8, 8, 99), 60, 1e-2)
}

/**
 * Grows `source` with a learned operator's initialisation only (steps = 0) and returns
 * max |Δ logits| between the grown model and the source on random inputs.
 */
export async function startLogitDiff<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  source: Model,
  target: TransformerSpec,
  options: O,
): Promise<number> {
  const { model } = await op.grow(source, target, fitContext(1), { ...options, steps: 0 })
  try {
    return maxAbsLogitDiff(source, model)
  } finally {
    tf.dispose(Object.values(model.params))
  }
}

/** Held-out loss of the source and of the model a learned operator grew and fitted on `batches`. */
export async function fittedAndSourceLoss<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  source: Model,
  target: TransformerSpec,
  options: O,
  batches: BatchSource,
  heldOut: Batch[],
): Promise<{ source: number; fitted: number; firstFitLoss: number }> {
  const { model, report } = await op.grow(source, target, fitContext(1, batches), options)
  try {
    const losses = report.details.fitLosses as number[]
    return { source: meanLoss(source, heldOut), fitted: meanLoss(model, heldOut), firstFitLoss: losses[0] }
  } finally {
    tf.dispose(Object.values(model.params))
  }
}

/**
 * A source with weights of order one (initModel's, ×8) and non-trivial norms and biases (seeded
 * normal, std 0.3, around 1 for scales and 0 otherwise), so logits are large enough that an
 * exactness check on them means something.
 */
export function orderOneModel(spec: TransformerSpec, seed = 3): Model {
  const init = initModel(spec, seed)
  const params: Params = {}
  for (const p of paramTable(spec)) {
    const t = init.params[p.name]
    params[p.name] = tf.tidy(() =>
      p.kind === 'weight' || p.kind === 'embedding'
        ? tf.mul(t, 8)
        : tf.add(
            p.kind === 'scale' ? 1 : 0,
            tf.randomNormal(p.shape, 0, 0.3, 'float32', seed + p.name.length),
          ),
    )
    t.dispose()
  }
  return { spec, params }
}

/**
 * A model with trained-like weights: initModel's biases and norms are trivial (0 and 1), so a
 * function-preservation check on it would miss any bug that only shows on non-trivial ones;
 * every tensor gets seeded normal noise (std 0.2 unless given).
 */
export function perturbedModel(spec: TransformerSpec, seed: number, std = 0.2): Model {
  const m = initModel(spec, seed)
  const rng = new SeededRandom(seed)
  for (const [k, t] of Object.entries(m.params)) {
    m.params[k] = tf.tidy(() => tf.add(t, tf.tensor(rng.normals(t.size, std), t.shape)))
    t.dispose()
  }
  return m
}

/**
 * A learned operator's fitting from its function-preserving start: a source pretrained 60 steps
 * on a Markov chain, grown to `target` and fitted with `options`, must end at or below the
 * source's loss on held-out batches of the same chain. Returns both losses (the caller asserts).
 */
export async function fitFromPreservingStart<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  small: TransformerSpec,
  target: TransformerSpec,
  options: O,
): Promise<{ source: number; fitted: number }> {
  const source = await markovPretrained(small)
  const heldStream = markovBatches(target, 8, 8, 4242)
  const held = Array.from({ length: 4 }, () => heldStream.next())
  try {
    return await fittedAndSourceLoss(op, source, target, options, markovBatches(target, 8, 8, 1), held)
  } finally {
    held.forEach(disposeBatch)
    tf.dispose(Object.values(source.params))
  }
}
