import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  applyMask,
  applyMomentMap,
  assertNoShrink,
  countParams,
  disposeModel,
  exampleFlops,
  FlopMeter,
  formatIssue,
  type GrowthContext,
  type GrowthMask,
  type GrowthOperator,
  type Model,
  type Params,
  paramTable,
  parseOptions,
  parseSpec,
  SeededRandom,
  SproutError,
  saveCheckpoint,
  type TransformerSpec,
} from '@sprout/core'
import type { BatchStream } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { z } from 'zod'
import { createFit } from './fit.js'
import {
  CHECKPOINT_DIR,
  evaluate,
  type TrainerState,
  type TrainOptions,
  type TrainResult,
  train,
} from './loop.js'
import type { MetricsRow } from './metrics.js'
import { learningRate, type ScheduleConfig } from './schedule.js'

/** One growth stage of a run config (`stages: [...]`). */
export const stageSchema = z
  .object({
    /** Grow after this many optimisation steps, or "auto": the method's own timing rule (G_stack for stack). */
    atStep: z.union([z.number(), z.literal('auto')]).optional(),
    /** Grow after this many training tokens (rounded up to whole steps). */
    atTokens: z.number().optional(),
    /** A built-in method name, a plugin path or an installed package (as `sprout grow --method`). */
    method: z.string().min(1),
    /** The spec to grow into: a file (relative to the config) or an inline object. */
    target: z.union([z.string(), z.record(z.string(), z.unknown())]),
    options: z.record(z.string(), z.unknown()).default({}),
    /** continue: the run's learning-rate schedule goes on; restart: it starts again at this step. */
    schedule: z.enum(['continue', 'restart']).default('continue'),
    /** Linear warm-up over this many steps after the growth (default: none when moments are mapped). */
    warmupSteps: z.number().int().nonnegative().optional(),
    /** map: carry the optimizer moments through the method's moment map; reset: start from zero. */
    optimizer: z.enum(['map', 'reset']).default('map'),
  })
  .strict()

export type StageConfig = z.infer<typeof stageSchema>

/** Resolves a method reference (name, path or package) to its operator; the CLI supplies it. */
export type OperatorResolver = (ref: string) => Promise<GrowthOperator<any>>

/** A stage checked against the run before training starts. */
export interface PlannedStage {
  /** 1-based: the model is in stage i after the i-th growth. */
  index: number
  step: number
  op: GrowthOperator<any>
  options: Record<string, unknown>
  target: TransformerSpec
  schedule: 'continue' | 'restart'
  warmupSteps?: number
  optimizer: 'map' | 'reset'
}

/** What happened at a growth; listed in run.json and the checkpoint. */
export interface StageRecord {
  stage: number
  step: number
  method: string
  options: Record<string, unknown>
  spec: TransformerSpec
  params: number
  growthFlops: number
  seconds: number
  /** Tokens the method drew from the run's stream (learned operators' fitting). */
  tokens: number
  moments: 'mapped' | 'reset'
  schedule: 'continue' | 'restart'
  warmupSteps: number
  valLossBefore: number | null
  valLossAfter: number
}

function stageName(s: StageConfig, i: number): string {
  return `stage ${i + 1} (${s.method})`
}

function readTarget(target: StageConfig['target']): TransformerSpec {
  if (typeof target !== 'string') return parseSpec(target)
  if (!existsSync(target)) throw new SproutError('INPUT_INVALID', `target spec file ${target} does not exist`)
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(target, 'utf8'))
  } catch (e) {
    throw new SproutError(
      'INPUT_INVALID',
      `target spec file ${target} is not valid JSON: ${(e as Error).message}`,
    )
  }
  return parseSpec(raw)
}

export interface RunShape {
  /** The model's spec now: the run's initial spec, or the current stage's when resuming. */
  spec: TransformerSpec
  /** Growths already done (resuming): their reachability was checked when the run started. */
  appliedStages?: number
  steps: number
  /** Tokens per optimisation step (batch × sequence × accumulation). */
  tokensPerStep: number
  /** Sequence length the run trains at (for "auto" timing's compute estimate). */
  seqLen: number
  examplesPerStep: number
  /** FLOP budget of the run, if any ("auto" timing uses it as G_stack's C). */
  budgetFlops?: number
}

/**
 * Checks every stage before training starts and resolves its step, method, options and target:
 * atStep (or atTokens, or "auto") must be a whole step in 1..steps−1 and increasing, the target
 * must be reachable from the previous stage's spec (no shrinking, same architecture) and the
 * method's own `check` must accept it. Throws SproutError naming the stage and the reason.
 */
export async function planStages(
  stages: StageConfig[],
  run: RunShape,
  resolve: OperatorResolver | undefined,
): Promise<PlannedStage[]> {
  if (stages.length > 0 && !resolve)
    throw new SproutError('USAGE', 'this run has growth stages but no method resolver was given')
  const planned: PlannedStage[] = []
  let prev = run.spec
  let prevStep = 0
  for (let i = 0; i < stages.length; i++) {
    const raw = stages[i] as StageConfig
    const name = stageName(raw, i)
    const fail = (why: string): never => {
      throw new SproutError('INPUT_INVALID', `${name}: ${why}`)
    }
    const parsed = stageSchema.safeParse(raw)
    if (!parsed.success) fail(formatIssue('stage', parsed.error.issues[0], raw).replace(/^stage\./, ''))
    const s = parsed.data!
    const wrap = <T>(f: () => T): T => {
      try {
        return f()
      } catch (e) {
        if (e instanceof SproutError && !e.message.startsWith(name)) fail(e.message)
        throw e
      }
    }
    let op: GrowthOperator<any>
    try {
      op = await resolve!(s.method)
    } catch (e) {
      return fail((e as Error).message)
    }
    const target = wrap(() => readTarget(s.target))
    const options = wrap(() => parseOptions(op, s.options))
    if (i >= (run.appliedStages ?? 0)) {
      wrap(() => assertNoShrink(prev, target, op.name))
      wrap(() => op.check(prev, target, options))
    }
    if ((s.atStep === undefined) === (s.atTokens === undefined))
      fail('give exactly one of atStep or atTokens')
    let step: number
    if (s.atStep === 'auto') {
      if (!op.growthTokens)
        fail(
          `atStep "auto" needs a method with a growth-timing rule (stack: G_stack's formula); give atStep or atTokens`,
        )
      // G_stack's C: the run's FLOP budget, else training the target for the whole run.
      const computeFlops =
        run.budgetFlops ?? exampleFlops(target, run.seqLen).total * run.examplesPerStep * run.steps
      const tokens = op.growthTokens!({ targetParams: countParams(target), computeFlops }, options)
      step = Math.ceil(tokens / run.tokensPerStep)
      if (!(step < run.steps))
        fail(
          `atStep "auto": ${op.name}'s timing rule puts the growth after ${tokens.toExponential(3)} tokens (step ${step}), beyond the run's ${run.steps} steps; the rule was fitted on much larger models, give atStep or atTokens`,
        )
    } else if (s.atTokens !== undefined) {
      if (!(s.atTokens > 0)) fail(`atTokens must be positive (got ${s.atTokens})`)
      step = Math.ceil(s.atTokens / run.tokensPerStep)
    } else step = s.atStep as number
    if (!Number.isInteger(step) || step <= 0) fail(`atStep must be a positive whole step (got ${step})`)
    if (step <= prevStep)
      fail(
        `step ${step} does not come after the previous stage's step ${prevStep}; stages must grow at increasing steps`,
      )
    if (step >= run.steps)
      fail(`step ${step} is not before the end of the run (steps ${run.steps}); grow earlier or train longer`)
    planned.push({
      index: i + 1,
      step,
      op,
      options,
      target,
      schedule: s.schedule,
      warmupSteps: s.warmupSteps,
      optimizer: s.optimizer,
    })
    // Resuming, the next stage grows the model as it is now (e.g. LEMON's adjusted normEps).
    prev = i + 1 === (run.appliedStages ?? 0) ? run.spec : target
    prevStep = step
  }
  return planned
}

/**
 * The learning-rate multiplier of a progressive run: the run's schedule, restarted at the last
 * stage that says `"schedule": "restart"`, times a linear warm-up after the last growth that has one.
 */
export function stagedSchedule(base: ScheduleConfig, records: readonly StageRecord[]): ScheduleConfig {
  return {
    kind: 'function',
    fn: (step, total) => {
      const applied = records.filter((r) => r.step <= step)
      const last = applied.at(-1)
      const restart = applied.filter((r) => r.schedule === 'restart').at(-1)
      let lr: number
      if (restart) {
        const sched =
          restart.warmupSteps > 0 && base.kind !== 'function'
            ? { ...base, warmupSteps: restart.warmupSteps }
            : base
        lr = learningRate(sched, 1, step - restart.step, total - restart.step)
      } else lr = learningRate(base, 1, step, total)
      if (last && last.schedule === 'continue' && last.warmupSteps > 0)
        lr *= Math.min(1, (step - last.step + 1) / last.warmupSteps)
      return lr
    },
  }
}

export interface ProgressiveOptions
  extends Omit<TrainOptions, 'stopAtStep' | 'stage' | 'keepOptimizerState'> {
  stages: PlannedStage[]
  /** Seed for the growth operators (each stage derives its own). */
  seed: number
  /** Stage the model is in (resuming): growths 1..stage are done. */
  stage?: number
  /** Records of the growths already done (resuming; from the checkpoint). */
  records?: StageRecord[]
  /** Called after each growth with every record so far (e.g. to update run.json). */
  onStage?: (records: StageRecord[]) => void
}

export interface ProgressiveResult extends TrainResult {
  stage: number
  stages: StageRecord[]
}

/** Seed of the growth at stage i: a fixed function of the run's seed (resume regrows identically). */
const stageSeed = (seed: number, index: number) => (seed * 1_000_003 + index * 7919) >>> 0

/** The source model as the forward pass sees it now: a growth mask, if any, baked into the weights. */
function bakeMask(model: Model, mask: GrowthMask | undefined, step: number): Model {
  const view = applyMask(model, mask, step)
  const params: Params = {}
  for (const [n, t] of Object.entries(view.params)) params[n] = t === model.params[n] ? t.clone() : t
  return { spec: model.spec, params }
}

interface Grown {
  model: Model
  moments: Params | undefined
  mask: GrowthMask | undefined
  record: StageRecord
}

async function growStage(
  stage: PlannedStage,
  model: Model,
  moments: Params | undefined,
  mask: GrowthMask | undefined,
  state: TrainerState,
  opts: ProgressiveOptions,
  valLossBefore: number | null,
): Promise<Grown> {
  const start = performance.now()
  const stream = opts.train
  const log = opts.log ?? (() => {})
  let drawn = 0
  const counted: BatchStream = {
    batchSize: stream.batchSize,
    seqLen: stream.seqLen,
    tokensPerBatch: stream.tokensPerBatch,
    next: () => {
      drawn++
      return stream.next()
    },
    cursor: () => stream.cursor(),
    seek: (c) => stream.seek(c),
  }
  const seed = stageSeed(opts.seed, stage.index)
  const ctx: GrowthContext = {
    seed,
    random: new SeededRandom(seed),
    fit: createFit(counted, (e) => {
      if (e.step !== undefined && e.total !== undefined && (e.step === e.total || e.step % 25 === 0))
        log(`  ${e.stage} ${e.step}/${e.total}${e.loss !== undefined ? ` loss ${e.loss.toFixed(4)}` : ''}`)
    }),
    batches: counted,
    flops: new FlopMeter(),
    progress: () => {},
    log: (m) => log(`  ${m}`),
  }
  // Resuming from the checkpoint before a growth, the stream has not been positioned yet.
  stream.seek(state.cursor)
  const source = bakeMask(model, mask, state.step)
  try {
    stage.op.check(source.spec, stage.target, stage.options)
    const result = await stage.op.grow(source, stage.target, ctx, stage.options)
    let mapped: Params | undefined
    try {
      const carry = stage.optimizer === 'map' && result.moments !== undefined && moments !== undefined
      mapped = carry ? applyMomentMap(result.moments!, moments!, paramTable(result.model.spec)) : undefined
    } catch (e) {
      disposeModel(result.model)
      throw e
    }
    if (result.optimizerState) tf.dispose(Object.values(result.optimizerState))
    const remaining = opts.config.steps - stage.step
    const recommended = Math.round((result.schedule?.warmupFraction ?? 0) * remaining)
    const base = opts.config.schedule
    const warmupSteps =
      stage.warmupSteps ??
      (mapped ? 0 : recommended > 0 ? recommended : base.kind !== 'function' ? (base.warmupSteps ?? 0) : 0)
    const val = evaluate(result.model, opts.val.slice(0, opts.config.evalBatches)).loss
    const record: StageRecord = {
      stage: stage.index,
      step: stage.step,
      method: stage.op.name,
      options: stage.options,
      spec: result.model.spec,
      params: countParams(result.model.spec),
      growthFlops: result.report.growthFlops,
      seconds: (performance.now() - start) / 1000,
      tokens: drawn * stream.tokensPerBatch,
      moments: mapped ? 'mapped' : 'reset',
      schedule: stage.schedule,
      warmupSteps,
      valLossBefore,
      valLossAfter: val,
    }
    const mask = result.mask ? { ...result.mask, startStep: stage.step } : undefined
    return { model: result.model, moments: mapped, mask, record }
  } finally {
    disposeModel(source)
  }
}

/**
 * Trains a run that grows at scheduled stages: train to the next stage's step, grow the model with
 * the stage's method (learned methods fit on the run's own stream, charged to the run), carry the
 * optimizer moments through the method's moment map (or reset them, with a warm-up), and continue
 * on the same data stream and learning-rate schedule. FLOPs, tokens and seconds of every stage add
 * up in `state` and the metrics rows. With `outDir`, a checkpoint is written before and after each
 * growth, so a run killed anywhere resumes to the same losses. The input model is not modified.
 */
export async function trainProgressive(opts: ProgressiveOptions): Promise<ProgressiveResult> {
  const records: StageRecord[] = [...(opts.records ?? [])]
  const schedule = stagedSchedule(opts.config.schedule, records)
  let stage = opts.stage ?? 0
  let model = opts.model
  let moments = opts.optimizerState
  let mask = opts.mask
  let state = opts.resumeFrom
  let owned = false
  const history: MetricsRow[] = []
  const release = () => {
    if (!owned) return
    disposeModel(model)
    if (moments) tf.dispose(Object.values(moments))
  }
  const meta = () => ({ ...opts.meta, stage, stages: records, mask: mask ?? null })
  try {
    for (;;) {
      const next = opts.stages[stage]
      const stopAt = next ? next.step : opts.config.steps
      let last: TrainResult | null = null
      // Without a next stage train() always runs (a finished run resumed returns at once).
      if (!next || !state || state.step < stopAt) {
        last = await train({
          ...opts,
          model,
          optimizerState: moments,
          resumeFrom: state,
          mask,
          config: { ...opts.config, schedule },
          meta: meta(),
          stopAtStep: stopAt,
          stage,
          progressLabel: opts.stages.length > 0 ? `stage ${stage}/${opts.stages.length}` : undefined,
          keepOptimizerState: next !== undefined,
        })
        release()
        model = last.model
        moments = last.optimizerState
        owned = true
        state = last.state
        history.push(...last.history)
        if (!next || state.step < next.step) {
          if (moments) tf.dispose(Object.values(moments))
          return { ...last, history, optimizerState: undefined, stage, stages: records }
        }
      }
      const s = state!
      const before = history.at(-1)?.valLoss ?? s.lastValLoss
      opts.log?.(`stage ${next.index}: growing with ${next.op.name} at step ${s.step}`)
      let grown: Grown
      try {
        grown = await growStage(next, model, moments, mask, s, opts, before)
      } catch (e) {
        const where = opts.outDir
          ? `the last checkpoint (step ${s.step}, stage ${stage}) in ${join(opts.outDir, CHECKPOINT_DIR)} is intact; fix the stage in run.json and resume with \`sprout train --resume ${opts.outDir}\``
          : 'nothing was saved'
        throw new SproutError(
          (e as SproutError).code ?? 'GROWTH_FAILED',
          `stage ${next.index} (${next.op.name} at step ${s.step}) failed: ${(e as Error).message}; ${where}`,
        )
      }
      release()
      model = grown.model
      moments = grown.moments
      mask = grown.mask
      owned = true
      stage = next.index
      records.splice(stage - 1, records.length, grown.record)
      state = {
        ...s,
        cursor: opts.train.cursor(),
        flops: s.flops + grown.record.growthFlops,
        tokens: s.tokens + grown.record.tokens,
        seconds: s.seconds + grown.record.seconds,
        optimizerSteps: moments ? s.optimizerSteps : 0,
        lastValLoss: grown.record.valLossAfter,
      }
      opts.log?.(
        `stage ${stage}: ${next.op.name} grew to ${grown.record.params.toLocaleString('en-US')} parameters (val loss ${grown.record.valLossBefore?.toFixed(4) ?? '-'} -> ${grown.record.valLossAfter.toFixed(4)}, moments ${grown.record.moments}${grown.record.warmupSteps > 0 ? `, warm-up ${grown.record.warmupSteps} steps` : ''})`,
      )
      if (opts.outDir)
        await saveCheckpoint(join(opts.outDir, CHECKPOINT_DIR), model, {
          meta: { ...meta(), trainer: state },
          state: moments,
          log: opts.log,
        })
      opts.onStage?.(records)
    }
  } catch (e) {
    release()
    throw e
  }
}
