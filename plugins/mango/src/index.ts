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
import { checkBlocks, createMango, fitStepFlops } from './operator.js'

export const mangoOptions = z.strictObject({
  /** Tensor-ring rank of every bond, or four bond ranks [a (L→B), b (B→I), c (I→O), d (O→L)]. */
  rank: z
    .union([
      z.number().int().min(1).max(64),
      z.tuple([
        z.number().int().min(1).max(64),
        z.number().int().min(1).max(64),
        z.number().int().min(1).max(64),
        z.number().int().min(1).max(64),
      ]),
    ])
    .default(4),
  /** Operator fitting steps (0: materialise the initialisation without data). */
  steps: z.number().int().min(0).default(100),
  learningRate: z.number().positive().default(1e-3),
  weightDecay: z.number().min(0).default(0),
  widthInit: z.enum(['identity', 'duplicate']).default('identity'),
  depthInit: z.enum(['stack', 'interpolate']).default('stack'),
  initNoise: z.number().min(0).default(0.01),
})
export type MangoOptions = z.infer<typeof mangoOptions>

/** Batch shape used for FLOP accounting when the context has no batches (steps = 0). */
const DEFAULT_BATCH = 8

function checkMango(source: TransformerSpec, target: TransformerSpec): void {
  assertNoShrink(source, target, 'mango')
  if (source.moe || target.moe)
    throw new GrowthError(
      'mango: mixture-of-experts models are not supported (the ring has no expert axis); grow the dense model with mango, then convert it with a sparse-upcycling method',
    )
  if (source.nKVHeads !== undefined || target.nKVHeads !== undefined)
    throw new GrowthError(
      'mango: grouped-query attention (nKVHeads) is not supported: k and v must split into the same dModel×dModel blocks as q; use a spec without nKVHeads',
    )
  if (source.vocabSize !== target.vocabSize)
    throw new GrowthError(
      `mango: the vocabulary axis is never expanded; use the same vocabSize (${source.vocabSize}) in the target`,
    )
  if (source.maxSeqLen !== target.maxSeqLen)
    throw new GrowthError(
      `mango: the position axis is never expanded; use the same maxSeqLen (${source.maxSeqLen}) in the target`,
    )
  checkBlocks(source, 'source')
  checkBlocks(target, 'target')
}

const mango = defineOperator<MangoOptions>({
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
  options: mangoOptions as unknown as z.ZodType<MangoOptions>,
  capabilities: {
    width: true,
    depth: true,
    heads: true,
    ffn: true,
    moe: false,
    learned: true,
    functionPreserving: false,
  },
  check: checkMango,
  async grow(source, target, ctx, options): Promise<GrowthResult> {
    const start = performance.now()
    checkMango(source.spec, target)
    validateParams(source.spec, source.params)
    if (options.steps > 0 && !ctx.fit)
      throw new GrowthError(
        'mango: learned methods need data to fit the operator; pass training data (e.g. `--data moby-dick`) or use --option steps=0 to materialise the initialisation only',
      )
    const op = createMango(
      source.spec,
      target,
      {
        rank: options.rank,
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
      if (options.steps > 0) {
        ctx.progress({ stage: 'mango: fitting operator', step: 0, total: options.steps })
        fit = await ctx.fit!({
          trainables: { ...op.variables },
          loss: (batch) => loss({ spec: target, params: op.materialise(source.params) }, batch),
          steps: options.steps,
          learningRate: options.learningRate,
          weightDecay: options.weightDecay,
          flopsPerStep,
          label: 'mango',
        })
      }
      const params = tf.tidy(() => op.materialise(source.params)) as Params
      ctx.flops.add(op.materialiseFlops, 'growth')
      const fitFlops = fit?.flops ?? 0
      ctx.log(
        `mango: rank ${JSON.stringify(options.rank)}, ${op.parameterCount} operator parameters, ${fit?.steps ?? 0} fitting steps` +
          (fit && fit.losses.length > 0
            ? `, loss ${fit.losses[0].toFixed(4)} -> ${fit.losses[fit.losses.length - 1].toFixed(4)}`
            : ''),
      )
      return {
        model: { spec: structuredClone(target), params },
        report: {
          method: 'mango',
          growthFlops: fitFlops + op.materialiseFlops,
          steps: fit?.steps ?? 0,
          seconds: (performance.now() - start) / 1000,
          functionPreserving: false,
          maxAbsLogitDiff: null,
          details: {
            rank: options.rank,
            operatorParameters: op.parameterCount,
            ring: op.dims,
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

export default mango
export * from './operator.js'
export * from './ring.js'
export { mango }
