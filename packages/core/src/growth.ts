import * as tf from '@tensorflow/tfjs'
import { z } from 'zod'
import { GrowthError, SproutError } from './errors.js'
import { FlopMeter } from './flops.js'
import type { Batch } from './forward.js'
import type { MomentMap } from './moments.js'
import { metaProblems, type OperatorMeta } from './operator-meta.js'
import { countParams, type Model, type Params } from './params.js'
import { SeededRandom } from './random.js'
import { formatIssue, isMoELayer, type TransformerSpec } from './spec.js'

export interface OperatorCapabilities {
  /** Grows dModel. */
  width: boolean
  /** Grows nLayers. */
  depth: boolean
  /** Grows nHeads. */
  heads: boolean
  /** Grows dFF. */
  ffn: boolean
  /** Produces mixture-of-experts layers. */
  moe: boolean
  /** Trains parameters of its own (needs data through GrowthContext.fit). */
  learned: boolean
  /** The grown model computes the same function as the source (max |Δ logits| < 1e-4). */
  functionPreserving: boolean
}

/**
 * The capability table with the named flags true and every other one false, so an operator
 * states only what it does: `capabilities('depth', 'functionPreserving')`.
 */
export function capabilities(...flags: (keyof OperatorCapabilities)[]): OperatorCapabilities {
  const table: OperatorCapabilities = {
    width: false,
    depth: false,
    heads: false,
    ffn: false,
    moe: false,
    learned: false,
    functionPreserving: false,
  }
  for (const flag of flags) table[flag] = true
  return table
}

/** Learning-rate schedule recommended by a method for training the grown model. */
export interface ScheduleRecommendation {
  kind: 'cosine' | 'linear' | 'constant'
  /** Multiplier on the run's peak learning rate. */
  peakLrScale: number
  warmupFraction: number
  /** Fraction of the planned steps over which the schedule decays (LEMON decays faster: < 1). */
  decayFraction: number
  /** Final learning rate as a fraction of the peak. */
  minLrRatio: number
  /** Start from a fresh optimizer (G_stack) rather than transferred moments. */
  freshOptimizer: boolean
  /** Extra: MSG-style mask ramp, steps over which new structure fades in. */
  maskRampSteps?: number
  note: string
}

/**
 * The recipe of methods whose grown model trains as a fresh run of the larger size: the peak
 * learning rate of training from scratch after a 1% warm-up, cosine to 0.1 of it over all the
 * planned steps, a fresh optimizer. `note` says why for the method; `extra` adds to it (a mask ramp).
 */
export function freshRunSchedule(
  note: string,
  extra: Pick<ScheduleRecommendation, 'maskRampSteps'> = {},
): ScheduleRecommendation {
  return {
    kind: 'cosine',
    peakLrScale: 1,
    warmupFraction: 0.01,
    decayFraction: 1,
    minLrRatio: 0.1,
    freshOptimizer: true,
    ...extra,
    note,
  }
}

export interface GrowthReport {
  method: string
  /** FLOPs spent growing, operator fitting included. */
  growthFlops: number
  /** Optimisation steps spent fitting the operator (0 for fixed operators). */
  steps: number
  seconds: number
  functionPreserving: boolean
  /** Max |Δ logits| between source and target on random inputs, when measured. */
  maxAbsLogitDiff: number | null
  /** Method-specific numbers (operator parameter count, fitting losses, ...). */
  details: Record<string, unknown>
}

export interface GrowthResult {
  model: Model
  report: GrowthReport
  /** Optimizer moments for the target parameters, where the method transfers them. */
  optimizerState?: Params
  /**
   * How the source's optimizer moments become the target's (see `applyMomentMap`), for methods
   * whose growth is a fixed map of parameters. Absent: the trainer resets the moments (with a
   * warm-up) when it grows inside a run.
   */
  moments?: MomentMap
  schedule?: ScheduleRecommendation
  /** New structure faded in during training (MSG-style); the model is lossless at mask 0. */
  mask?: GrowthMask
  /**
   * Target parameters that are new structure, not source parameters carried over in their role
   * (block expansion: every parameter of the inserted blocks). `sprout grow` stores the list in
   * the checkpoint so a run with `"freeze": ["source"]` trains only these. Absent when the method
   * does not say; freezing "source" is then refused.
   */
  newParams?: string[]
}

/**
 * Parameters whose values the trainer multiplies by m(step) = min(1, step / rampSteps) in the
 * forward pass. With residual-branch output projections listed, new layers start as identities.
 */
export interface GrowthMask {
  params: string[]
  rampSteps: number
  /** Training step at which the ramp starts (a growth inside a progressive run); default 0. */
  startStep?: number
}

/** The mask's multiplier at a training step. */
export function maskScale(mask: GrowthMask, step: number): number {
  const t = step - (mask.startStep ?? 0)
  return mask.rampSteps <= 0 ? 1 : Math.min(1, Math.max(0, t / mask.rampSteps))
}

/** The model as the forward pass sees it at `step`: masked parameters scaled by m(step) (new tensors; others shared). */
export function applyMask(model: Model, mask: GrowthMask | undefined, step: number): Model {
  if (!mask) return model
  const m = maskScale(mask, step)
  if (m === 1) return model
  const params: Params = { ...model.params }
  for (const name of mask.params) {
    if (!params[name]) throw new GrowthError(`mask names "${name}", which the model does not have`)
    params[name] = tf.mul(params[name], m)
  }
  return { spec: model.spec, params }
}

/** What a learned operator asks the trainer to do: minimise `loss` over `trainables`. */
export interface FitRequest {
  trainables: Record<string, tf.Variable>
  /** Loss of the target model built from the current trainables, on a real batch. */
  loss: (batch: Batch) => tf.Scalar
  steps: number
  learningRate: number
  weightDecay?: number
  /** FLOPs of one fitting step (forward + backward through the operator and the target model). */
  flopsPerStep: number
  label?: string
}

export interface FitResult {
  losses: number[]
  steps: number
  flops: number
  seconds: number
}

export interface ProgressEvent {
  stage: string
  step?: number
  total?: number
  loss?: number
}

export interface GrowthContext {
  seed: number
  random: SeededRandom
  /** Trains an operator's parameters on real batches; absent when no data was supplied. */
  fit?: (request: FitRequest) => Promise<FitResult>
  /** Real batches for the target model (for learned operators and verification). */
  batches?: { next(): Batch; batchSize: number; seqLen: number }
  flops: FlopMeter
  progress(event: ProgressEvent): void
  log(message: string): void
}

/** A context for growing without data: seeded randomness, a fresh FLOP meter, no progress or log output. */
export function quietGrowthContext(seed = 1): GrowthContext {
  return { seed, random: new SeededRandom(seed), flops: new FlopMeter(), progress: () => {}, log: () => {} }
}

export interface GrowthOperator<O extends Record<string, unknown> = Record<string, unknown>> {
  name: string
  description: string
  /** Display name and papers, for `sprout list` and reports (absent for utilities like identity). */
  meta?: OperatorMeta
  /** Validates options and fills defaults; error messages name the option. */
  options: z.ZodType<O>
  capabilities: OperatorCapabilities
  /** Throws GrowthError when this operator cannot grow source into target with these options. */
  check(source: TransformerSpec, target: TransformerSpec, options: O): void
  grow(source: Model, target: TransformerSpec, ctx: GrowthContext, options: O): Promise<GrowthResult>
  /**
   * Optional: when to grow inside a progressive run (`"atStep": "auto"`), as tokens of training
   * at the source size, for a target of `targetParams` parameters and a run of `computeFlops`
   * FLOPs (G_stack's timing formula for stacking). Methods without it need an explicit step.
   */
  growthTokens?(run: { targetParams: number; computeFlops: number }, options: O): number
}

/**
 * Identity helper for plugin authors: the options type is inferred from the zod schema (its
 * output, defaults filled), so `check` and `grow` receive typed options without a cast.
 */
export function defineOperator<S extends z.ZodType<Record<string, unknown>>>(
  op: Omit<GrowthOperator<z.output<S>>, 'options'> & { options: S },
): GrowthOperator<z.output<S>>
/** With an explicit options type (older plugins); the schema must produce it. */
export function defineOperator<O extends Record<string, unknown>>(op: GrowthOperator<O>): GrowthOperator<O>
export function defineOperator(op: GrowthOperator): GrowthOperator {
  return op
}

/** Parses raw options (e.g. from `--option k=v`) through the operator's schema. */
export function parseOptions<O extends Record<string, unknown>>(
  op: GrowthOperator<O>,
  raw: Record<string, unknown>,
): O {
  const r = op.options.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    const msg = formatIssue('option', issue, raw).replace(/^option\./, 'option ')
    throw new GrowthError(`method "${op.name}": ${msg}`, 'GROWTH_OPTIONS')
  }
  return r.data
}

/** Parses `key=value` strings: values are JSON when they parse (numbers, booleans, arrays), else strings. */
export function parseOptionPairs(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new SproutError('USAGE', `--option "${pair}" must look like key=value`)
    const key = pair.slice(0, eq)
    const value = pair.slice(eq + 1)
    try {
      out[key] = JSON.parse(value)
    } catch {
      out[key] = value
    }
  }
  return out
}

const capabilityKeys = ['width', 'depth', 'heads', 'ffn', 'moe', 'learned', 'functionPreserving'] as const

/** Checks that a value is a well-formed GrowthOperator (used when loading plugins). */
export function assertGrowthOperator(value: unknown, origin: string): asserts value is GrowthOperator {
  const op = value as Partial<GrowthOperator>
  const problems: string[] = []
  if (typeof value !== 'object' || value === null) problems.push('it is not an object')
  else {
    if (typeof op.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(op.name))
      problems.push('"name" must be a lower-case identifier like "my-method"')
    if (typeof op.description !== 'string' || op.description.length === 0)
      problems.push('"description" must be a non-empty string')
    if (!op.options || typeof (op.options as z.ZodType).safeParse !== 'function')
      problems.push('"options" must be a zod schema')
    if (typeof op.check !== 'function') problems.push('"check" must be a function')
    if (typeof op.grow !== 'function') problems.push('"grow" must be a function')
    const caps = op.capabilities as Record<string, unknown> | undefined
    if (!caps || capabilityKeys.some((k) => typeof caps[k] !== 'boolean'))
      problems.push(`"capabilities" must have boolean ${capabilityKeys.join(', ')}`)
    problems.push(...metaProblems(op.meta))
  }
  if (problems.length > 0)
    throw new SproutError('METHOD_INVALID', `${origin} is not a GrowthOperator: ${problems.join('; ')}`)
}

/** Explicit registry of growth operators; registering a name twice throws. */
export class OperatorRegistry {
  private readonly ops = new Map<string, GrowthOperator<any>>()
  register(op: GrowthOperator<any>): this {
    assertGrowthOperator(op, `operator "${(op as { name?: string })?.name ?? '?'}"`)
    if (this.ops.has(op.name))
      throw new SproutError('METHOD_DUPLICATE', `a method named "${op.name}" is already registered`)
    this.ops.set(op.name, op)
    return this
  }
  has(name: string): boolean {
    return this.ops.has(name)
  }
  get(name: string): GrowthOperator<any> {
    const op = this.ops.get(name)
    if (!op)
      throw new SproutError(
        'METHOD_UNKNOWN',
        `unknown method "${name}"; available: ${[...this.ops.keys()].join(', ') || '(none)'}`,
      )
    return op
  }
  list(): GrowthOperator<any>[] {
    return [...this.ops.values()]
  }
}

/** Refuses targets that are smaller than the source on any axis; shared by most operators. */
export function assertNoShrink(source: TransformerSpec, target: TransformerSpec, method: string): void {
  if (source.family !== target.family)
    throw new GrowthError(`${method}: cannot change family from "${source.family}" to "${target.family}"`)
  const axes = ['dModel', 'nLayers', 'nHeads', 'headDim', 'dFF', 'maxSeqLen', 'vocabSize'] as const
  for (const a of axes)
    if (target[a] < source[a])
      throw new GrowthError(
        `${method}: target ${a} ${target[a]} is smaller than the source's ${source[a]}; growth never shrinks`,
      )
  for (const a of ['norm', 'normPlacement', 'activation', 'bias', 'tieEmbeddings'] as const)
    if (target[a] !== source[a])
      throw new GrowthError(
        `${method}: target ${a} ${JSON.stringify(target[a])} differs from the source's ${JSON.stringify(source[a])}; growth keeps the architecture`,
      )
  // Rotary positions, grouped-query attention (nKVHeads) and the masked-LM head are opt-in spec
  // fields. This refuses changing them; an operator that does not handle GQA ('kv' axes) or the
  // masked-LM head must also refuse sources that use them, in its own check().
  const extras = [
    ['positional', source.positional ?? 'learned', target.positional ?? 'learned'],
    ['ropeTheta', source.ropeTheta ?? null, target.ropeTheta ?? null],
    ['nKVHeads', source.nKVHeads ?? null, target.nKVHeads ?? null],
    ['mlmHead', source.mlmHead ?? false, target.mlmHead ?? false],
  ] as const
  for (const [field, s, t] of extras)
    if (s !== t)
      throw new GrowthError(
        `${method}: target ${field} ${JSON.stringify(t)} differs from the source's ${JSON.stringify(s)}; changing ${field} is not supported by this method (grow with the same ${field})`,
      )
  if (JSON.stringify(source.image) !== JSON.stringify(target.image))
    throw new GrowthError(`${method}: the image settings (size, patch, channels, classes) must match`)
}

export { z }

/** Spec fields that no growth method changes (methods add the shape fields they keep too). */
export const ARCHITECTURE_FIELDS = [
  'family',
  'vocabSize',
  'maxSeqLen',
  'activation',
  'norm',
  'normPlacement',
  'normEps',
  'bias',
  'tieEmbeddings',
  'positional',
  'mlmHead',
  'image',
] as const satisfies readonly (keyof TransformerSpec)[]

/**
 * What a depth-only growth (stacking, block expansion) must keep: the architecture and every
 * width field. Check it with `specDifference(source, target, DEPTH_ONLY_FIELDS)`.
 */
export const DEPTH_ONLY_FIELDS = [
  ...ARCHITECTURE_FIELDS,
  'dModel',
  'nHeads',
  'nKVHeads',
  'headDim',
  'dFF',
  'ropeTheta',
] as const satisfies readonly (keyof TransformerSpec)[]

/**
 * The options of a function-preserving operator that checks itself: `verify` (measure max
 * |Δ logits| after growing; `auto` does so up to `verifyMaxParams` parameters) and `tolerance`
 * (a measured difference at or above it throws: the growth is meant to be exact). Spread into
 * the operator's zod object.
 */
export const verifyOptionsShape = {
  verify: z.enum(['auto', 'always', 'never']).default('auto'),
  verifyMaxParams: z.number().int().positive().default(5_000_000),
  tolerance: z.number().positive().default(1e-4),
}

/**
 * Whether a function-preserving operator measures max |Δ logits| after growing: always, never,
 * or (`auto`) while the grown model has at most `verifyMaxParams` parameters (one forward pass
 * of each model is too slow for a real-size model).
 */
export function shouldVerify(
  options: { verify: 'auto' | 'always' | 'never'; verifyMaxParams: number },
  spec: TransformerSpec,
): boolean {
  return (
    options.verify === 'always' || (options.verify === 'auto' && countParams(spec) <= options.verifyMaxParams)
  )
}

/** The first of `fields` whose value differs between two specs (compared as JSON), or null. */
export function specDifference(
  source: TransformerSpec,
  target: TransformerSpec,
  fields: readonly (keyof TransformerSpec)[],
): { field: keyof TransformerSpec; source: string; target: string } | null {
  for (const field of fields) {
    const a = JSON.stringify(source[field]) ?? 'unset'
    const b = JSON.stringify(target[field]) ?? 'unset'
    if (a !== b) return { field, source: a, target: b }
  }
  return null
}

/**
 * For depth growth that copies source layer `from(i)` into target layer i: refuses (GrowthError)
 * when a copy would land on a layer whose MoE-ness differs, naming the moe.layers the target
 * needs, or when the target's expert settings differ from the source's.
 */
export function assertMoELayerCopies(
  method: string,
  source: TransformerSpec,
  target: TransformerSpec,
  from: (i: number) => number,
): void {
  const needed: number[] = []
  let first: { layer: number; sourceLayer: number } | null = null
  for (let i = 0; i < target.nLayers; i++) {
    const j = from(i)
    if (isMoELayer(source, j)) needed.push(i)
    if (!first && isMoELayer(source, j) !== isMoELayer(target, i)) first = { layer: i, sourceLayer: j }
  }
  if (first)
    throw new GrowthError(
      `target layer ${first.layer} copies source layer ${first.sourceLayer}, but only one of them is a mixture-of-experts layer; set the target's moe.layers to [${needed.join(', ')}]`,
    )
  const settings = (s: TransformerSpec) => JSON.stringify({ ...s.moe, layers: [] })
  if (source.moe && target.moe && settings(source) !== settings(target))
    throw new GrowthError(
      `${method} copies experts as they are: the target moe settings (experts, topK, ...) must equal the source's`,
    )
}
