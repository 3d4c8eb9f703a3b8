import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  applyMask,
  type Batch,
  computeLoss,
  crossEntropy,
  exampleFlops,
  forwardDetailed,
  type GrowthMask,
  type Model,
  type Params,
  SproutError,
  saveCheckpoint,
} from '@sprout/core'
import type { BatchCursor, BatchStream } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { frozenWeightGradFlops } from './freeze.js'
import type { MetricsRow } from './metrics.js'
import { clipByGlobalNorm, createOptimizer, type OptimizerConfig } from './optimizers.js'
import { createProgress } from './progress.js'
import { learningRate, type ScheduleConfig } from './schedule.js'

export interface Budget {
  /** Stop once this many training FLOPs (including `flopOffset`) have been spent. */
  flops?: number
  /** Stop after this much wall time in this process. */
  seconds?: number
  /** Stop at the first evaluation whose validation loss is at or below this. */
  targetValLoss?: number
}

export interface TrainConfig {
  /** Planned optimisation steps (the schedule spans them). */
  steps: number
  optimizer: OptimizerConfig
  schedule: ScheduleConfig
  /** Clip gradients to this global L2 norm. */
  clipNorm?: number
  /** Micro-batches accumulated per step (the effective batch is accumulate × batchSize). */
  accumulate?: number
  evalEvery: number
  evalBatches: number
  checkpointEvery?: number
  budget?: Budget
}

/** Where a run stands; stored in the checkpoint's meta so `resume` continues exactly. */
export interface TrainerState {
  step: number
  tokens: number
  flops: number
  seconds: number
  cursor: BatchCursor
  optimizerSteps: number
  lastValLoss: number | null
}

export interface TrainOptions {
  model: Model
  train: BatchStream
  /** Fixed validation batches (owned by the caller). */
  val: Batch[]
  config: TrainConfig
  /** Checkpoints and metrics.jsonl go here; omit to keep everything in memory. */
  outDir?: string
  /** Extra meta written into every checkpoint (the run config, data description, ...). */
  meta?: Record<string, unknown>
  /** Initial optimizer moments (AdamW: m.<name>, v.<name>), e.g. transferred by a growth method. */
  optimizerState?: Params
  /** Continue from a saved state (weights in `model`, moments in `optimizerState`). */
  resumeFrom?: TrainerState
  /** FLOPs already spent before this run (growth, source pretraining) that count toward the budget. */
  flopOffset?: number
  onMetrics?: (row: MetricsRow) => void
  log?: (line: string) => void
  /** Progress bar on a TTY (default: when stderr is a TTY). */
  progress?: boolean
  /** MSG-style growth mask: listed parameters are scaled by min(1, step / rampSteps) in the forward pass. */
  mask?: GrowthMask
  /** Stop early (e.g. on SIGINT) after the current step; a checkpoint is written if outDir is set. */
  shouldStop?: () => boolean
  /**
   * Parameters kept fixed (see resolveFrozen): no gradient, no optimizer state, no update, no
   * weight decay, and their weight-gradient FLOPs are not charged.
   */
  frozen?: readonly string[]
  /**
   * Progressive runs: end this call at this step (a growth stage follows; the schedule still spans
   * `config.steps`), tag metrics rows with `stage`, show `progressLabel` in the progress bar, and
   * return the optimizer moments (`keepOptimizerState`) for mapping onto the grown model.
   */
  stopAtStep?: number
  stage?: number
  progressLabel?: string
  keepOptimizerState?: boolean
}

export type StopReason = 'steps' | 'flops' | 'seconds' | 'targetValLoss' | 'interrupted'

export interface TrainResult {
  model: Model
  state: TrainerState
  trainLoss: number
  valLoss: number | null
  history: MetricsRow[]
  stoppedBy: StopReason
  /** The optimizer moments at the end (with `keepOptimizerState`); the caller owns them. */
  optimizerState?: Params
}

export const CHECKPOINT_DIR = 'checkpoint'
export const METRICS_FILE = 'metrics.jsonl'

/** Training FLOPs of one optimisation step (forward + backward, 3× forward, minus frozen weights' gradients). */
export function stepFlops(
  model: Model,
  stream: BatchStream,
  accumulate = 1,
  frozen: ReadonlySet<string> = new Set(),
): number {
  const seqLen = model.spec.family === 'vit' ? model.spec.maxSeqLen : stream.seqLen
  const perExample =
    exampleFlops(model.spec, seqLen).total - frozenWeightGradFlops(model.spec, frozen, seqLen)
  return perExample * stream.batchSize * accumulate
}

/** Mean validation cross-entropy (and accuracy for classifiers) over fixed batches. */
export function evaluate(model: Model, val: Batch[]): { loss: number; accuracy: number | null } {
  let lossSum = 0
  let correct = 0
  let examples = 0
  for (const batch of val) {
    const [ce, hits] = tf.tidy(() => {
      const out = forwardDetailed(model, batch.inputs, { training: false })
      const hits =
        model.spec.family === 'vit'
          ? tf.sum(tf.cast(tf.equal(tf.argMax(out.logits, -1), batch.targets.toInt()), 'int32'))
          : tf.scalar(0, 'int32')
      return [crossEntropy(out.logits, batch.targets, batch.weights), hits]
    })
    lossSum += ce.dataSync()[0]
    correct += hits.dataSync()[0]
    tf.dispose([ce, hits])
    examples += batch.targets.shape[0]!
  }
  const loss = lossSum / Math.max(1, val.length)
  return { loss, accuracy: model.spec.family === 'vit' ? correct / Math.max(1, examples) : null }
}

/** evaluate() on the model as the forward pass sees it at `step` under a growth mask. */
export function evaluateMasked(model: Model, val: Batch[], mask: GrowthMask | undefined, step: number) {
  const view = applyMask(model, mask, step)
  try {
    return evaluate(view, val)
  } finally {
    for (const [n, t] of Object.entries(view.params)) if (t !== model.params[n]) t.dispose()
  }
}

function checkConfig(c: TrainConfig): void {
  const bad = (field: string, why: string) => {
    throw new SproutError('INPUT_INVALID', `training config: ${field} ${why}`)
  }
  if (!Number.isInteger(c.steps) || c.steps < 0)
    bad('steps', `must be a non-negative integer (got ${c.steps})`)
  if (!(c.optimizer.lr > 0)) bad('optimizer.lr', `must be positive (got ${c.optimizer.lr})`)
  if (!Number.isInteger(c.evalEvery) || c.evalEvery < 1)
    bad('evalEvery', `must be a positive integer (got ${c.evalEvery})`)
  if (!Number.isInteger(c.evalBatches) || c.evalBatches < 1)
    bad('evalBatches', `must be a positive integer (got ${c.evalBatches})`)
  const acc = c.accumulate ?? 1
  if (!Number.isInteger(acc) || acc < 1) bad('accumulate', `must be a positive integer (got ${acc})`)
  if (c.clipNorm !== undefined && !(c.clipNorm > 0)) bad('clipNorm', `must be positive (got ${c.clipNorm})`)
  if (c.checkpointEvery !== undefined && (!Number.isInteger(c.checkpointEvery) || c.checkpointEvery < 1))
    bad('checkpointEvery', `must be a positive integer (got ${c.checkpointEvery})`)
}

/** Trainable copies of the parameters not frozen, and the map from tfjs variable names back to ours. */
function toVariables(
  params: Params,
  frozen: ReadonlySet<string>,
): { vars: Record<string, tf.Variable>; byVarName: Map<string, string> } {
  const vars: Record<string, tf.Variable> = {}
  const byVarName = new Map<string, string>()
  for (const [name, t] of Object.entries(params)) {
    if (frozen.has(name)) continue
    const v = tf.variable(t, true)
    vars[name] = v
    byVarName.set(v.name, name)
  }
  return { vars, byVarName }
}

/** Loss and gradients of one micro-batch, keyed by parameter name; the loss is scaled by `scale`. */
function microStep(
  model: Model,
  vars: Record<string, tf.Variable>,
  byVarName: Map<string, string>,
  batch: Batch,
  scale: number,
  mask: GrowthMask | undefined,
  step: number,
): { loss: number; grads: Record<string, tf.Tensor> } {
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(
        () =>
          tf.mul(
            computeLoss(applyMask(model, mask, step), batch, { training: true }).loss,
            scale,
          ) as tf.Scalar,
      ),
    Object.values(vars),
  )
  const loss = value.dataSync()[0] / scale
  value.dispose()
  const named: Record<string, tf.Tensor> = {}
  for (const [varName, g] of Object.entries(grads)) named[byVarName.get(varName)!] = g
  return { loss, grads: named }
}

/** Keeps the rows up to the resumed step; a row torn by a kill mid-write is dropped. */
function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => {
      try {
        return (JSON.parse(l) as MetricsRow).step <= step
      } catch {
        return false
      }
    })
  writeFileSync(path, kept.map((l) => `${l}\n`).join(''))
}

function replaceLastMetricsRow(path: string, row: MetricsRow): void {
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
  lines[lines.length - 1] = JSON.stringify(row)
  writeFileSync(path, `${lines.join('\n')}\n`)
}

/**
 * The training loop shared by every method and the benchmark: steps until `config.steps` or a
 * budget, evaluation every `evalEvery`, JSONL metrics, checkpoints (weights, optimizer moments,
 * step, data cursor) every `checkpointEvery` and at the end. The input model is not modified.
 */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { config, train: stream, val } = opts
  checkConfig(config)
  const accumulate = config.accumulate ?? 1
  const log = opts.log ?? (() => {})
  const frozen = new Set(opts.frozen ?? [])
  for (const name of frozen)
    if (!opts.model.params[name])
      throw new SproutError('INPUT_INVALID', `training: frozen parameter "${name}" is not in the model`)
  const { vars, byVarName } = toVariables(opts.model.params, frozen)
  // Frozen parameters stay the caller's tensors: the tape never differentiates them.
  const model: Model = {
    spec: opts.model.spec,
    params: Object.fromEntries(
      Object.keys(opts.model.params).map((n) => [n, vars[n] ?? opts.model.params[n]]),
    ),
  }
  const optimizer = createOptimizer(vars, config.optimizer)
  const progress = createProgress(config.steps, opts.progress ?? process.stderr.isTTY === true, log, {
    label: opts.progressLabel,
    start: opts.resumeFrom?.step,
  })
  const endStep = Math.min(config.steps, opts.stopAtStep ?? config.steps)
  try {
    if (opts.optimizerState) optimizer.load(opts.optimizerState, opts.resumeFrom?.optimizerSteps ?? 0)
    if (opts.resumeFrom) stream.seek(opts.resumeFrom.cursor)
    const state: TrainerState = opts.resumeFrom
      ? { ...opts.resumeFrom, cursor: { ...opts.resumeFrom.cursor } }
      : {
          step: 0,
          tokens: 0,
          flops: 0,
          seconds: 0,
          cursor: stream.cursor(),
          optimizerSteps: 0,
          lastValLoss: null,
        }
    const perStep = stepFlops(model, stream, accumulate, frozen)
    const metricsPath = opts.outDir ? join(opts.outDir, METRICS_FILE) : null
    if (opts.outDir) mkdirSync(opts.outDir, { recursive: true })
    if (metricsPath) truncateMetrics(metricsPath, state.step)
    const history: MetricsRow[] = []
    const start = performance.now()
    const baseSeconds = state.seconds
    let checkpointed = opts.resumeFrom ? state.step : -1
    let stoppedBy: StopReason = 'steps'
    let trainLoss = Number.NaN

    const checkpoint = async () => {
      if (!opts.outDir || checkpointed === state.step) return
      const moments = optimizer.state()
      try {
        await saveCheckpoint(join(opts.outDir, CHECKPOINT_DIR), model, {
          meta: { ...opts.meta, trainer: state },
          state: moments,
          log,
        })
      } finally {
        tf.dispose(Object.values(moments))
      }
      checkpointed = state.step
    }

    while (state.step < endStep) {
      // Yield once per step so signal handlers (Ctrl-C) and IPC can run during a long run.
      await new Promise((resolve) => setImmediate(resolve))
      const budget = config.budget ?? {}
      if (opts.shouldStop?.()) {
        stoppedBy = 'interrupted'
        break
      }
      if (budget.flops !== undefined && (opts.flopOffset ?? 0) + state.flops >= budget.flops) {
        stoppedBy = 'flops'
        break
      }
      if (budget.seconds !== undefined && (performance.now() - start) / 1000 >= budget.seconds) {
        stoppedBy = 'seconds'
        break
      }
      const stepStart = performance.now()
      const lr = learningRate(config.schedule, config.optimizer.lr, state.step, config.steps)
      let summed: Record<string, tf.Tensor> = {}
      let loss = 0
      for (let a = 0; a < accumulate; a++) {
        const batch = stream.next()
        try {
          const r = microStep(model, vars, byVarName, batch, 1 / accumulate, opts.mask, state.step)
          loss += r.loss / accumulate
          if (a === 0) summed = r.grads
          else
            for (const [n, g] of Object.entries(r.grads)) {
              const s = tf.add(summed[n], g)
              tf.dispose([summed[n], g])
              summed[n] = s
            }
        } finally {
          tf.dispose(Object.values(batch))
        }
      }
      if (!Number.isFinite(loss)) {
        tf.dispose(Object.values(summed))
        const where =
          checkpointed >= 0 && opts.outDir
            ? `the last good checkpoint (step ${checkpointed}) is in ${join(opts.outDir, CHECKPOINT_DIR)}`
            : 'no checkpoint was written'
        throw new SproutError(
          'TRAINING_DIVERGED',
          `training loss is ${loss} at step ${state.step + 1}; stopped, ${where}. Lower the learning rate or set clipNorm, then resume`,
        )
      }
      const { grads, norm } = clipByGlobalNorm(summed, config.clipNorm)
      optimizer.apply(grads, lr)
      tf.dispose(Object.values(grads))
      trainLoss = loss
      state.step++
      state.tokens += stream.tokensPerBatch * accumulate
      state.flops += perStep
      state.cursor = stream.cursor()
      state.optimizerSteps = optimizer.steps
      state.seconds = baseSeconds + (performance.now() - start) / 1000
      let valLoss: number | null = null
      let valAccuracy: number | null = null
      if (state.step % config.evalEvery === 0 || state.step === config.steps) {
        const e = evaluateMasked(model, val.slice(0, config.evalBatches), opts.mask, state.step)
        valLoss = e.loss
        valAccuracy = e.accuracy
        state.lastValLoss = valLoss
      }
      const row: MetricsRow = {
        step: state.step,
        tokens: state.tokens,
        flops: state.flops,
        loss,
        valLoss,
        ...(valAccuracy !== null ? { valAccuracy } : {}),
        lr,
        gradNorm: norm,
        tokensPerSecond: (stream.tokensPerBatch * accumulate) / ((performance.now() - stepStart) / 1000),
        seconds: state.seconds,
        ...(opts.stage !== undefined ? { stage: opts.stage } : {}),
      }
      history.push(row)
      if (metricsPath) appendFileSync(metricsPath, `${JSON.stringify(row)}\n`)
      opts.onMetrics?.(row)
      progress.update(row)
      if (config.checkpointEvery && state.step % config.checkpointEvery === 0) await checkpoint()
      if (valLoss !== null && budget.targetValLoss !== undefined && valLoss <= budget.targetValLoss) {
        stoppedBy = 'targetValLoss'
        break
      }
    }
    const last = history.at(-1)
    if (last && last.valLoss === null) {
      const e = evaluateMasked(model, val.slice(0, config.evalBatches), opts.mask, state.step)
      state.lastValLoss = e.loss
      last.valLoss = e.loss
      if (e.accuracy !== null) last.valAccuracy = e.accuracy
      // The run stopped early (budget, Ctrl-C): metrics.jsonl's last row gets the final evaluation too.
      if (metricsPath) replaceLastMetricsRow(metricsPath, last)
    }
    await checkpoint()
    progress.stop(stoppedBy)
    const params: Params = {}
    for (const [n, t] of Object.entries(model.params)) params[n] = t.clone()
    return {
      model: { spec: structuredClone(model.spec), params },
      state,
      trainLoss,
      valLoss: state.lastValLoss,
      history,
      stoppedBy,
      ...(opts.keepOptimizerState ? { optimizerState: optimizer.state() } : {}),
    }
  } finally {
    progress.stop()
    optimizer.dispose()
    tf.dispose(Object.values(vars))
  }
}
