import {
  capabilities,
  countParams,
  defineOperator,
  freshRunSchedule,
  GrowthError,
  type GrowthResult,
  maxAbsLogitDiff,
  type Params,
  paramTable,
  type ScheduleRecommendation,
  shouldVerify,
  type TransformerSpec,
  validateParams,
  verifyOptionsShape,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { cloneParam, tiedOutputNorm } from './clone.js'
import { widthFactors } from './factors.js'

export const hypercloningOptions = z.strictObject({
  /**
   * Signal-to-noise ratio in dB of the symmetric noise added to cloned weights (the paper's snr_db);
   * absent: exact copies. The noise cancels over the cloned inputs, so the function is kept either way.
   */
  noise: z.number().finite().optional(),
  ...verifyOptionsShape,
})
export type HypercloningOptions = z.infer<typeof hypercloningOptions>

const M = 'hypercloning'

/** The grown model computes the source's function, so training simply continues it. */
export function hypercloningSchedule(): ScheduleRecommendation {
  return freshRunSchedule(
    'HyperCloning: train the cloned model as a fresh run of the larger size (same recipe as from scratch, short warm-up); the clones start identical (up to the symmetric noise) and drift apart with training',
  )
}

const hypercloning = defineOperator({
  name: M,
  meta: {
    displayName: 'HyperCloning',
    papers: [
      {
        title:
          'Scaling Smart: Accelerating Large Language Model Pre-training with Small Model Initialization',
        authors: 'Samragh et al.',
        venue: 'arXiv',
        year: 2024,
        url: 'https://arxiv.org/abs/2409.12903',
      },
    ],
  },
  description:
    'HyperCloning (Samragh et al., 2024): integer width growth (dModel, heads, FFN) by tiling weights with 1/n on the input side; exactly function-preserving, optional symmetric noise (noise = SNR in dB)',
  options: hypercloningOptions,
  capabilities: capabilities('width', 'heads', 'ffn', 'functionPreserving'),
  check: (source, target) => {
    widthFactors(source, target)
  },
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    const factors = widthFactors(source.spec, target)
    validateParams(source.spec, source.params)
    const spec: TransformerSpec = structuredClone(target)
    const table = paramTable(spec)
    const sourceShapes = new Map(paramTable(source.spec).map((p) => [p.name, p.shape]))
    const params: Params = {}
    let written = 0
    try {
      table.forEach((info, i) => {
        ctx.progress({ stage: 'hypercloning: clone', step: i, total: table.length })
        const src = source.params[info.name]
        const data = cloneParam(
          info,
          sourceShapes.get(info.name)!,
          src.dataSync() as Float32Array,
          spec,
          factors,
          options,
          ctx.random,
        )
        params[info.name] = tf.tensor(data, info.shape)
        written += data.length
      })
      validateParams(spec, params)
    } catch (e) {
      tf.dispose(Object.values(params))
      throw e
    }
    const model = { spec, params }
    // One multiply per written element (the 1/n scaling), plus the noise.
    ctx.flops.add(written, 'growth')
    const seconds = (performance.now() - start) / 1000
    const measure = shouldVerify(options, spec)
    let diff: number | null = null
    if (measure) {
      ctx.progress({ stage: 'hypercloning: verify', step: table.length, total: table.length })
      diff = maxAbsLogitDiff(source, model, { seed: ctx.seed })
      if (!(diff < options.tolerance)) {
        tf.dispose(Object.values(params))
        throw new GrowthError(
          `${M}: the cloned model's logits differ from the source's by ${diff} (tolerance ${options.tolerance}); cloning is exact${options.noise === undefined ? '' : ' and the noise cancels'}, so this is a bug: please report it`,
        )
      }
    }
    return {
      model,
      report: {
        method: M,
        growthFlops: written,
        steps: 0,
        seconds,
        functionPreserving: true,
        maxAbsLogitDiff: diff,
        details: {
          factors,
          noiseSnrDb: options.noise ?? null,
          tiedOutputNormScaled: tiedOutputNorm(spec),
          addedParams: countParams(spec) - countParams(source.spec),
        },
      },
      schedule: hypercloningSchedule(),
    }
  },
})

export default hypercloning
export { addSymmetricNoise, cloneParam, tiedOutputNorm, tile } from './clone.js'
export { roleFactor, type WidthFactors, widthFactors } from './factors.js'
export { hypercloning }
