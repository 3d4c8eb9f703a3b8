import type { GrowthContext, TransformerSpec } from '@sprout/core'
import { growthData } from '@sprout/trainer'

/** Adds real batches of `data` and the trainer's fit to a growth context (for learned operators). */
export async function dataContext(
  base: GrowthContext,
  data: string,
  target: TransformerSpec,
  seed: number,
  batchSize?: number,
): Promise<GrowthContext> {
  const extra = await growthData(data, target, { seed, batchSize, progress: base.progress })
  base.log(`data: ${extra.describe}`)
  return { ...base, batches: extra.batches, fit: extra.fit }
}
