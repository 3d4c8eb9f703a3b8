import { defineLearnedOperator, learnedOptionsShape, learnedStartShape, startNoise, z } from '@sprout/core'
import { createLigo } from './operator.js'

export const ligoOptions = z.strictObject({
  ...learnedOptionsShape,
  ...learnedStartShape,
  form: z.enum(['kronecker', 'block']).default('kronecker'),
  newLayers: z.enum(['identity', 'copy']).default('identity'),
})
export type LigoOptions = z.infer<typeof ligoOptions>

const ligo = defineLearnedOperator({
  name: 'ligo',
  meta: {
    displayName: 'LiGO',
    papers: [
      {
        title: 'Learning to Grow Pretrained Models for Efficient Transformer Training',
        authors: 'Wang et al.',
        venue: 'ICLR',
        year: 2023,
        url: 'https://arxiv.org/abs/2303.00980',
      },
    ],
  },
  description:
    'Learned linear growth of width (Kronecker factors, residual tying) and depth (per-module layer mixing), fitted on real batches',
  options: ligoOptions,
  capabilities: { width: true, depth: true, heads: true, ffn: true, moe: false },
  create: (source, target, sourceParams, options, seed) =>
    createLigo(
      source,
      target,
      sourceParams,
      {
        form: options.form,
        widthInit: options.widthInit,
        depthInit: options.depthInit,
        newLayers: options.newLayers,
        initNoise: startNoise(options.initNoise, options.widthInit === 'preserve'),
      },
      seed,
    ),
})

export default ligo
export * from './operator.js'
export { ligo }
