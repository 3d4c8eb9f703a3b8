import { FlopMeter, type GrowthContext, SeededRandom, type TransformerSpec } from '@sprout/core'
import { createTestFit, type FitRecord } from './fit.js'
import { syntheticBatches } from './synthetic.js'

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
