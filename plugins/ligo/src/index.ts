import {
  assertNoShrink,
  defineOperator,
  type FitResult,
  GrowthError,
  type GrowthResult,
  loss,
  type Params,
  type TransformerSpec,
  validateParams,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { checkLearnedGrowth, createLigo, fitStepFlops } from './operator.js'

export const ligoOptions = z.strictObject({
  /** Operator fitting steps (0: materialise the initialisation without data). */
  steps: z.number().int().min(0).default(100),
  learningRate: z.number().positive().default(1e-3),
  weightDecay: z.number().min(0).default(0),
  form: z.enum(['kronecker', 'block']).default('kronecker'),
  widthInit: z.enum(['identity', 'duplicate']).default('identity'),
  depthInit: z.enum(['stack', 'interpolate']).default('stack'),
  initNoise: z.number().min(0).default(0.01),
})
export type LigoOptions = z.infer<typeof ligoOptions>

/** Batch shape used for FLOP accounting when the context has no batches (steps = 0). */
const DEFAULT_BATCH = 8

function checkLigo(source: TransformerSpec, target: TransformerSpec): void {
  assertNoShrink(source, target, 'ligo')
  checkLearnedGrowth(source, target, 'ligo')
}

const ligo = defineOperator<LigoOptions>({
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
  options: ligoOptions as unknown as z.ZodType<LigoOptions>,
  capabilities: {
    width: true,
    depth: true,
    heads: true,
    ffn: true,
    moe: false,
    learned: true,
    functionPreserving: false,
  },
  check: checkLigo,
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    checkLigo(source.spec, target)
    validateParams(source.spec, source.params)
    if (options.steps > 0 && !ctx.fit)
      throw new GrowthError(
        'ligo: learned methods need data to fit the operator; pass training data (e.g. `--data moby-dick`) or use --option steps=0 to materialise the initialisation only',
      )
    const op = createLigo(
      source.spec,
      target,
      {
        form: options.form,
        widthInit: options.widthInit,
        depthInit: options.depthInit,
        initNoise: options.initNoise,
      },
      ctx.random.seed(),
    )
    try {
      let fit: FitResult | null = null
      const batchSize = ctx.batches?.batchSize ?? DEFAULT_BATCH
      const seqLen = ctx.batches?.seqLen ?? target.maxSeqLen
      const flopsPerStep = fitStepFlops(op, batchSize, seqLen)
      if (options.steps > 0 && Object.keys(op.variables).length > 0) {
        ctx.progress({ stage: 'ligo: fitting operator', step: 0, total: options.steps })
        fit = await ctx.fit!({
          trainables: op.variables,
          loss: (batch) => loss({ spec: target, params: op.materialise(source.params) }, batch),
          steps: options.steps,
          learningRate: options.learningRate,
          weightDecay: options.weightDecay,
          flopsPerStep,
          label: 'ligo',
        })
      }
      const params = tf.tidy(() => op.materialise(source.params)) as Params
      ctx.flops.add(op.materialiseFlops, 'growth')
      const fitFlops = fit?.flops ?? 0
      ctx.log(
        `ligo: ${op.parameterCount} operator parameters, ${fit?.steps ?? 0} fitting steps` +
          (fit && fit.losses.length > 0
            ? `, loss ${fit.losses[0].toFixed(4)} -> ${fit.losses[fit.losses.length - 1].toFixed(4)}`
            : ''),
      )
      return {
        model: { spec: structuredClone(target), params },
        report: {
          method: 'ligo',
          growthFlops: fitFlops + op.materialiseFlops,
          steps: fit?.steps ?? 0,
          seconds: (performance.now() - start) / 1000,
          functionPreserving: false,
          maxAbsLogitDiff: null,
          details: {
            operatorParameters: op.parameterCount,
            growsWidth: op.growsWidth,
            growsDepth: op.growsDepth,
            form: options.form,
            widthInit: options.widthInit,
            depthInit: options.depthInit,
            fitFlops,
            fitFlopsPerStep: flopsPerStep,
            materialiseFlops: op.materialiseFlops,
            fitLosses: fit?.losses ?? [],
          },
        },
      }
    } finally {
      op.dispose()
    }
  },
})

export default ligo
export * from './operator.js'
export { ligo }
