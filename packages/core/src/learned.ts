import * as tf from '@tensorflow/tfjs'
import { z } from 'zod'
import { GrowthError } from './errors.js'
import { exampleFlops } from './flops.js'
import { loss } from './forward.js'
import {
  assertNoShrink,
  defineOperator,
  type FitResult,
  type GrowthContext,
  type GrowthOperator,
  type GrowthResult,
  type OperatorCapabilities,
} from './growth.js'
import type { OperatorMeta } from './operator-meta.js'
import { type Params, validateParams } from './params.js'
import type { TransformerSpec } from './spec.js'

/**
 * What a learned growth method (LiGO, Mango, ...) is: trainable operator parameters and the
 * target's parameters as a differentiable function of them and of the (frozen) source weights.
 */
export interface LearnedParametrisation {
  /** The operator's trainable parameters (disposed by `dispose`). */
  variables: Record<string, tf.Variable>
  /** Number of trainable scalars. */
  parameterCount: number
  /** FLOPs of one materialisation (forward only). */
  materialiseFlops: number
  /**
   * FLOPs of the backward pass through the materialisation to the variables (not to the source
   * weights, which are constants). A fitting step costs materialise + this + one training step.
   */
  gradientFlops: number
  /** Target parameters from the current variables; call inside tidy or a gradient tape. */
  materialise(sourceParams: Params): Params
  /** Method-specific numbers for the growth report. */
  details: Record<string, unknown>
  dispose(): void
}

/** Options every learned method has: the fit's length and optimiser settings. */
export const learnedOptionsShape = {
  /** Operator fitting steps (0: materialise the initialisation without data). */
  steps: z.number().int().min(0).default(100),
  learningRate: z.number().positive().default(1e-3),
  weightDecay: z.number().min(0).default(0),
}

/**
 * Options of learned methods that start from a fixed initialisation before fitting: the width
 * start (`preserve`: the function-preserving start; `identity`: [I; 0]; `duplicate`: Net2Net-like
 * copies), the depth start (stacked or interpolated layers) and the noise on the start
 * (resolved by `startNoise`).
 */
export const learnedStartShape = {
  widthInit: z.enum(['preserve', 'identity', 'duplicate']).default('preserve'),
  depthInit: z.enum(['stack', 'interpolate']).default('stack'),
  /** Default: 0 for the function-preserving start, 0.01 for the fixed-method starts (their new entries need it to get gradients). */
  initNoise: z.number().min(0).optional(),
}

/**
 * The noise on a learned operator's start: `initNoise` when the options set it, else none for a
 * start that preserves the function and 0.01 for the others, whose zero entries would otherwise
 * get no gradient.
 */
export function startNoise(initNoise: number | undefined, preserving: boolean): number {
  return initNoise ?? (preserving ? 0 : 0.01)
}

export interface LearnedOptions {
  steps: number
  learningRate: number
  weightDecay: number
}

/** Batch shape used for FLOP accounting when the context has no batches (steps = 0). */
export const DEFAULT_FIT_BATCH = 8

/** FLOPs of one fitting step: operator forward and backward plus one target training step. */
export function learnedFitStepFlops(
  op: Pick<LearnedParametrisation, 'materialiseFlops' | 'gradientFlops'>,
  target: TransformerSpec,
  batchSize: number,
  seqLen: number,
): number {
  return op.materialiseFlops + op.gradientFlops + exampleFlops(target, seqLen).total * batchSize
}

/**
 * Refusals shared by the learned operators: what their operator forms cannot grow, with what to
 * do instead. Includes `assertNoShrink`.
 */
export function checkLearnedGrowth(source: TransformerSpec, target: TransformerSpec, method: string): void {
  assertNoShrink(source, target, method)
  if (source.moe || target.moe)
    throw new GrowthError(
      `${method}: mixture-of-experts models are not supported (the operator has no expert axis); grow the dense model with ${method}, then convert it with a sparse-upcycling method`,
    )
  if (source.nKVHeads !== undefined || target.nKVHeads !== undefined)
    throw new GrowthError(
      `${method}: grouped-query attention (nKVHeads) is not supported: the operator maps k and v with the attention width of q; use a spec without nKVHeads`,
    )
  if (source.vocabSize !== target.vocabSize)
    throw new GrowthError(
      `${method}: the vocabulary axis is never expanded; use the same vocabSize (${source.vocabSize}) in the target`,
    )
  if (source.maxSeqLen !== target.maxSeqLen)
    throw new GrowthError(
      `${method}: the position axis is never expanded; use the same maxSeqLen (${source.maxSeqLen}) in the target`,
    )
}

/** A learned method: everything that differs between LiGO, Mango and future learned operators. */
export interface LearnedMethod<S extends z.ZodType<LearnedOptions & Record<string, unknown>>> {
  name: string
  description: string
  /** Display name and papers, as on every operator. */
  meta?: OperatorMeta
  /** A zod object schema that spreads `learnedOptionsShape` and adds the method's own options. */
  options: S
  /** Capabilities besides `learned` (always true) and `functionPreserving` (false: fitting moves the function). */
  capabilities: Omit<OperatorCapabilities, 'learned' | 'functionPreserving'>
  /** Method-specific refusals, after `checkLearnedGrowth`. */
  check?(source: TransformerSpec, target: TransformerSpec, options: z.output<S>): void
  /**
   * Builds the parametrisation, initialised as the method's options say; `sourceParams` lets
   * an initialisation depend on the source weights (e.g. a function-preserving one).
   */
  create(
    source: TransformerSpec,
    target: TransformerSpec,
    sourceParams: Params,
    options: z.output<S>,
    seed: number,
  ): LearnedParametrisation
}

/**
 * The growth operator of a learned method: validate, build the parametrisation, fit it on real
 * batches through `ctx.fit` (the trainer's), materialise the target once, report FLOPs
 * (fitting + final materialisation) and dispose everything the operator made.
 */
export function defineLearnedOperator<S extends z.ZodType<LearnedOptions & Record<string, unknown>>>(
  method: LearnedMethod<S>,
): GrowthOperator<z.output<S>> {
  const name = method.name
  const check = (source: TransformerSpec, target: TransformerSpec, options: z.output<S>) => {
    checkLearnedGrowth(source, target, name)
    method.check?.(source, target, options)
  }
  return defineOperator({
    name,
    description: method.description,
    ...(method.meta ? { meta: method.meta } : {}),
    options: method.options,
    capabilities: { ...method.capabilities, learned: true, functionPreserving: false },
    check,
    async grow(source, target, ctx: GrowthContext, options): Promise<GrowthResult> {
      const start = performance.now()
      check(source.spec, target, options)
      validateParams(source.spec, source.params)
      if (options.steps > 0 && !ctx.fit)
        throw new GrowthError(
          `${name}: learned methods need data to fit the operator; pass training data (e.g. \`--data moby-dick\`) or use --option steps=0 to materialise the initialisation only`,
        )
      const op = method.create(source.spec, target, source.params, options, ctx.random.seed())
      try {
        let fit: FitResult | null = null
        const batchSize = ctx.batches?.batchSize ?? DEFAULT_FIT_BATCH
        const seqLen = ctx.batches?.seqLen ?? target.maxSeqLen
        const flopsPerStep = learnedFitStepFlops(op, target, batchSize, seqLen)
        if (options.steps > 0 && op.parameterCount > 0) {
          ctx.progress({ stage: `${name}: fitting operator`, step: 0, total: options.steps })
          fit = await ctx.fit!({
            trainables: { ...op.variables },
            loss: (batch) => loss({ spec: target, params: op.materialise(source.params) }, batch),
            steps: options.steps,
            learningRate: options.learningRate,
            weightDecay: options.weightDecay,
            flopsPerStep,
            label: name,
          })
        }
        const params = tf.tidy(() => op.materialise(source.params)) as Params
        ctx.flops.add(op.materialiseFlops, 'growth')
        const fitFlops = fit?.flops ?? 0
        const losses = fit?.losses ?? []
        ctx.log(
          `${name}: ${op.parameterCount} operator parameters, ${fit?.steps ?? 0} fitting steps` +
            (losses.length > 0
              ? `, loss ${losses[0].toFixed(4)} -> ${losses[losses.length - 1].toFixed(4)}`
              : ''),
        )
        return {
          model: { spec: structuredClone(target), params },
          report: {
            method: name,
            growthFlops: fitFlops + op.materialiseFlops,
            steps: fit?.steps ?? 0,
            seconds: (performance.now() - start) / 1000,
            functionPreserving: false,
            maxAbsLogitDiff: null,
            details: {
              operatorParameters: op.parameterCount,
              ...op.details,
              fitFlops,
              fitFlopsPerStep: flopsPerStep,
              materialiseFlops: op.materialiseFlops,
              gradientFlops: op.gradientFlops,
              fitLosses: losses,
            },
          },
        }
      } finally {
        op.dispose()
      }
    },
  })
}

/** How target layers start in a learned depth map. */
export type DepthInit = 'stack' | 'interpolate'

/**
 * The source layer each target layer starts from ('stack': i mod L1, StackBERT order 0,1,0,1;
 * 'interpolate': floor(i·L1/L2), order 0,0,1,1), and whether it is the first target layer to
 * copy that source layer. A function-preserving start keeps the first copy as it is and zeroes
 * the residual-branch outputs (attention output, fc2) of the others, so that they add nothing
 * to the residual stream: the source's layers still run once each, in order.
 */
export function depthLayout(L1: number, L2: number, init: DepthInit): { from: number[]; first: boolean[] } {
  const from = Array.from({ length: L2 }, (_, i) => (init === 'stack' ? i % L1 : Math.floor((i * L1) / L2)))
  const seen = new Set<number>()
  const first = from.map((j) => {
    const isFirst = !seen.has(j)
    seen.add(j)
    return isFirst
  })
  return { from, first }
}
