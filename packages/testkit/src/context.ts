import { FlopMeter, type GrowthContext, type Model, SeededRandom, type TransformerSpec } from '@sprout/core'
import { pretrainModel, quietFitContext } from '@sprout/trainer'
import { createTestFit, type FitRecord } from './fit.js'
import { type BatchSource, syntheticBatches } from './synthetic.js'

export interface TestContext {
  ctx: GrowthContext
  /** One record per fit the operator asked for. */
  fits: FitRecord[]
  /** Messages the operator logged. */
  logs: string[]
}

/**
 * A GrowthContext like the CLI's, with seeded synthetic batches for the target and the
 * testkit's own AdamW fit (capped at `maxFitSteps` steps).
 */
export function testContext(target: TransformerSpec, seed: number, maxFitSteps?: number): TestContext {
  const fits: FitRecord[] = []
  const logs: string[] = []
  const batches = syntheticBatches(target, seed + 1)
  const ctx: GrowthContext = {
    seed,
    random: new SeededRandom(seed),
    fit: createTestFit(batches, fits, { maxSteps: maxFitSteps }),
    batches,
    flops: new FlopMeter(),
    progress: () => {},
    log: (message) => logs.push(message),
  }
  return { ctx, fits, logs }
}

/**
 * A quiet GrowthContext whose fit is the trainer's `createFit` on `batches` (no fit and no
 * batches when omitted: growing with steps = 0).
 */
export const fitContext: (seed: number, batches?: BatchSource) => GrowthContext = quietFitContext

/**
 * A source model trained for `steps` AdamW steps (the trainer's `createFit` on the model's own
 * weights) on `batches`, so that growth has something to transfer. Initialised with `seed`.
 */
export async function pretrainedModel(
  spec: TransformerSpec,
  batches: BatchSource,
  steps: number,
  learningRate: number,
  seed = 11,
): Promise<Model> {
  return (await pretrainModel(spec, batches, { steps, learningRate, seed })).model
}
