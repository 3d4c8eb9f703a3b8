import {
  computeLoss,
  type FitRequest,
  type FitResult,
  FlopMeter,
  type GrowthContext,
  initModel,
  type Model,
  type Params,
  SeededRandom,
  SproutError,
  type TransformerSpec,
} from '@sprout/core'
import type { BatchStream } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { AdamW } from './optimizers.js'

/**
 * The trainer's `fit` for learned growth operators (LiGO, Mango): AdamW at a constant learning
 * rate on the operator's parameters only, minimising the target model's loss on real batches
 * drawn from `stream` (anything with `next()`: a data stream, or synthetic batches in tests). FLOPs are the operator's own per-step estimate × steps.
 */
export function createFit(
  stream: Pick<BatchStream, 'next'>,
  progress: GrowthContext['progress'] = () => {},
): (request: FitRequest) => Promise<FitResult> {
  return async (request) => {
    const start = performance.now()
    const vars = Object.values(request.trainables)
    const names = new Map(Object.entries(request.trainables).map(([n, v]) => [v.name, n]))
    const optimizer = new AdamW(request.trainables, { weightDecay: request.weightDecay ?? 0 }, () => true)
    const losses: number[] = []
    const label = request.label ?? 'fit'
    try {
      for (let step = 1; step <= request.steps; step++) {
        const batch = stream.next()
        try {
          const { value, grads } = tf.variableGrads(() => request.loss(batch), vars)
          const loss = value.dataSync()[0]
          value.dispose()
          if (!Number.isFinite(loss)) {
            tf.dispose(Object.values(grads))
            throw new SproutError(
              'TRAINING_DIVERGED',
              `${label}: operator fitting loss is ${loss} at step ${step}; lower --option learningRate`,
            )
          }
          const named: Record<string, tf.Tensor> = {}
          for (const [vn, g] of Object.entries(grads)) named[names.get(vn)!] = g
          optimizer.apply(named, request.learningRate)
          tf.dispose(Object.values(grads))
          losses.push(loss)
          progress({ stage: `${label}: fitting operator`, step, total: request.steps, loss })
        } finally {
          tf.dispose(Object.values(batch))
        }
      }
    } finally {
      optimizer.dispose()
    }
    return {
      losses,
      steps: request.steps,
      flops: request.flopsPerStep * request.steps,
      seconds: (performance.now() - start) / 1000,
    }
  }
}

/**
 * A quiet GrowthContext (no progress, no log) seeded with `seed`, whose fit is `createFit` on
 * `stream`; without a stream it has neither fit nor batches (growing with steps = 0). What tests
 * and benchmark scripts pass a learned operator outside the CLI.
 */
export function quietFitContext(seed: number, stream?: NonNullable<GrowthContext['batches']>): GrowthContext {
  return {
    seed,
    random: new SeededRandom(seed),
    flops: new FlopMeter(),
    progress: () => {},
    log: () => {},
    ...(stream ? { batches: stream, fit: createFit(stream) } : {}),
  }
}

/**
 * `spec` initialised with `seed` and trained `steps` steps by `createFit` (AdamW at the constant
 * `learningRate` on every weight, no FLOP accounting) on `stream`: a source with something for
 * growth to transfer. Returns the model and the fit's losses.
 */
export async function pretrainModel(
  spec: TransformerSpec,
  stream: Pick<BatchStream, 'next'>,
  opts: { steps: number; learningRate: number; seed: number },
): Promise<{ model: Model; losses: number[] }> {
  const init = initModel(spec, opts.seed)
  const vars: Record<string, tf.Variable> = {}
  for (const [k, t] of Object.entries(init.params)) vars[k] = tf.variable(t)
  tf.dispose(Object.values(init.params))
  const { losses } = await createFit(stream)({
    trainables: vars,
    loss: (b) => computeLoss({ spec, params: vars as Params }, b).loss,
    steps: opts.steps,
    learningRate: opts.learningRate,
    flopsPerStep: 0,
  })
  const params: Params = {}
  for (const [k, v] of Object.entries(vars)) {
    params[k] = tf.clone(v)
    v.dispose()
  }
  return { model: { spec, params }, losses }
}
