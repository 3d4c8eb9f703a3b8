import { defineLearnedOperator, learnedOptionsShape, z } from '@sprout/core'
import { createLigo } from './operator.js'

export const ligoOptions = z.strictObject({
  ...learnedOptionsShape,
  form: z.enum(['kronecker', 'block']).default('kronecker'),
  widthInit: z.enum(['preserve', 'identity', 'duplicate']).default('preserve'),
  depthInit: z.enum(['stack', 'interpolate']).default('stack'),
  newLayers: z.enum(['identity', 'copy']).default('identity'),
  /** Default: 0 for the function-preserving start, 0.01 for the fixed-method starts (their new rows need it to get gradients). */
  initNoise: z.number().min(0).optional(),
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
        initNoise: options.initNoise ?? (options.widthInit === 'preserve' ? 0 : 0.01),
      },
      seed,
    ),
})

export default ligo
export * from './operator.js'
export { ligo }
