import {
  defineLearnedOperator,
  GrowthError,
  learnedOptionsShape,
  learnedStartShape,
  startNoise,
  z,
} from '@sprout/core'
import { checkBlocks, createMango, preservingRankProblem } from './operator.js'

const bond = z.number().int().min(1).max(64)

export const mangoOptions = z.strictObject({
  ...learnedOptionsShape,
  /**
   * Tensor-ring rank of every bond, or four bond ranks [a (L→B), b (B→I), c (I→O), d (O→L)].
   * The default [2, 2, 2, 1] is the smallest ring that holds the function-preserving start.
   */
  rank: z.union([bond, z.tuple([bond, bond, bond, bond])]).default([2, 2, 2, 1]),
  ...learnedStartShape,
})
export type MangoOptions = z.infer<typeof mangoOptions>

const mango = defineLearnedOperator({
  name: 'mango',
  meta: {
    displayName: 'Mango',
    papers: [
      {
        title: 'Reusing Pretrained Models by Multi-linear Operators for Efficient Training',
        authors: 'Pan et al.',
        venue: 'NeurIPS',
        year: 2023,
        url: 'https://arxiv.org/abs/2310.10699',
      },
    ],
  },
  description:
    'Multi-linear growth through a tensor ring of four cores over (parameter block, input, output, layer), fitted on real batches',
  options: mangoOptions,
  capabilities: { width: true, depth: true, heads: true, ffn: true, moe: false },
  check(source, target) {
    checkBlocks(source, 'source')
    checkBlocks(target, 'target')
  },
  create(source, target, sourceParams, options, seed) {
    const problem = options.widthInit === 'preserve' ? preservingRankProblem(options.rank) : null
    if (problem && options.initNoise === 0)
      throw new GrowthError(
        `mango: rank ${JSON.stringify(options.rank)}: ${problem}; the fallback [I; 0] start needs initNoise > 0 to fit, so raise the rank (e.g. rank=[2,2,2,1]) or initNoise`,
      )
    const preserving = options.widthInit === 'preserve' && !problem
    return createMango(
      source,
      target,
      sourceParams,
      {
        rank: options.rank,
        widthInit: options.widthInit,
        depthInit: options.depthInit,
        initNoise: startNoise(options.initNoise, preserving),
      },
      seed,
    )
  },
})

export default mango
export * from './operator.js'
export * from './ring.js'
export { mango }
