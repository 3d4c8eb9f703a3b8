import { appendFileSync, existsSync, rmSync } from 'node:fs'
import {
  type Batch,
  disposeModel,
  FlopMeter,
  type GrowthContext,
  GrowthError,
  type GrowthMask,
  type GrowthResult,
  initModel,
  type Model,
  type ScheduleRecommendation,
  SeededRandom,
  writeFileAtomic,
} from '@sprout/core'
import { createFit, evaluateMasked, scheduleFromRecommendation, train } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { type GrowthStep, growthSteps } from './growth.js'
import { metricsFile, runFile, runKey } from './layout.js'
import { evalEveryAt, stepsAt, type Unit, type UnitContext } from './plan.js'
import type { MethodRun } from './records.js'
import { dataFor, seedValue, trainConfig } from './source.js'
import type { ResolvedSuite } from './suites.js'

export const keyOf = (u: Unit, budget: number) => runKey(u.seed, u.planned.name, budget, u.lrMult)

/** The record of a run that could not happen (the method cannot do this growth, or a stage cannot fit). */
export function skippedRun(u: Unit, suite: ResolvedSuite, budget: number, reason: string): MethodRun {
  return {
    name: u.planned.name,
    method: u.planned.method,
    seed: u.seed,
    budget,
    steps: stepsAt(suite, budget),
    lr: suite.optimizer.lr,
    status: 'skipped',
    reason,
    growthFlops: 0,
    growthSeconds: 0,
    curve: [],
    finalValLoss: null,
    schedule: 'suite',
    ...(u.planned.progressive ? { stages: [] } : {}),
  }
}

/** The budgets of a unit that have no finished run on disk yet. */
export const pendingBudgets = (out: string, u: Unit) =>
  u.budgets.filter((b) => !existsSync(runFile(out, keyOf(u, b))))

function growthContext(
  seed: number,
  log: (line: string) => void,
  name: string,
  data?: Awaited<ReturnType<typeof dataFor>>,
): GrowthContext {
  return {
    seed,
    random: new SeededRandom(seed),
    flops: new FlopMeter(),
    batches: data?.train,
    fit: data?.train ? createFit(data.train) : undefined,
    progress: (e) => {
      if (e.step !== undefined && e.total !== undefined && e.total > 1 && e.step === e.total)
        log(
          `  ${name}: ${e.stage} ${e.step}/${e.total}${e.loss !== undefined ? ` loss ${e.loss.toFixed(4)}` : ''}`,
        )
    },
    log: (m) => log(`  ${name}: ${m}`),
  }
}

/** The model a unit trains at every budget: scratch's initialisation, or the method's growth. */
interface Start {
  model: Model
  record: Omit<MethodRun, 'budget' | 'steps' | 'lr' | 'curve' | 'finalValLoss'>
  mask?: GrowthMask
  optimizerState?: Record<string, tf.Tensor>
  recommendation?: ScheduleRecommendation
}

async function start(ctx: UnitContext, u: Unit, source: Model): Promise<Start | { skipped: string }> {
  const { suite, operators, progress } = ctx
  const p = u.planned
  const value = seedValue(suite, u.seed)
  const record: Start['record'] = {
    name: p.name,
    method: p.method,
    seed: u.seed,
    status: 'done',
    growthFlops: 0,
    growthSeconds: 0,
    schedule: 'suite',
    ...(p.variant ? { variantTarget: p.target } : {}),
  }
  if (p.method === 'scratch') return { model: initModel(p.target, value), record }
  let steps: GrowthStep[]
  try {
    steps = growthSteps(p, source.spec, operators)
  } catch (e) {
    if (e instanceof GrowthError) return { skipped: e.message }
    throw e
  }
  const learned = steps.some((s) => s.op.capabilities.learned)
  const fitData = learned ? await dataFor(suite, p.target, value + 200) : undefined
  const began = performance.now()
  let model = source
  let result: GrowthResult | undefined
  const details: Record<string, unknown> = {}
  for (const step of steps) {
    const grown = await step.op.grow(
      model,
      step.target,
      growthContext(value, progress.log, u.key, fitData),
      step.options,
    )
    // A composed growth's intermediate model and its optimizer state are not carried on.
    if (model !== source) disposeModel(model)
    if (result?.optimizerState) tf.dispose(Object.values(result.optimizerState))
    record.growthFlops += grown.report.growthFlops
    Object.assign(
      details,
      steps.length === 1 ? grown.report.details : { [step.op.name]: grown.report.details },
    )
    model = grown.model
    result = grown
  }
  record.growthSeconds = (performance.now() - began) / 1000
  record.details = details
  if (!result) throw new Error(`${p.method}: no growth step ran`)
  let optimizerState = steps.length === 1 ? result.optimizerState : undefined
  if (result.optimizerState && !optimizerState) tf.dispose(Object.values(result.optimizerState))
  if (optimizerState && result.schedule?.freshOptimizer) {
    tf.dispose(Object.values(optimizerState))
    optimizerState = undefined
  }
  if (result.schedule) {
    record.schedule = 'recommended'
    record.scheduleNote = result.schedule.note
  }
  return { model: result.model, record, mask: result.mask, optimizerState, recommendation: result.schedule }
}

/**
 * Grows (unless scratch) once, then trains the grown model at each pending budget with a
 * schedule that fully decays at that budget, writing each run's record as soon as it finishes.
 * Returns false when interrupted.
 */
export async function runUnit(ctx: UnitContext, u: Unit, source: Model): Promise<boolean> {
  const { out, suite, progress, stop } = ctx
  const budgets = pendingBudgets(out, u)
  if (budgets.length === 0) return true
  const begun = await start(ctx, u, source)
  if ('skipped' in begun) {
    for (const budget of budgets)
      writeFileAtomic(
        runFile(out, keyOf(u, budget)),
        JSON.stringify(skippedRun(u, suite, budget, begun.skipped)),
      )
    progress.log(`${u.key}: skipped: ${begun.skipped}`)
    return true
  }
  const data = await dataFor(suite, u.planned.target, seedValue(suite, u.seed))
  const val: Batch[] = data.valBatches(suite.evalBatches)
  const firstBatch = data.train.cursor()
  // The grown model as training first sees it (a growth mask starts at 0); the same at every budget.
  const initialLoss = evaluateMasked(begun.model, val, begun.mask, 0).loss
  try {
    for (const budget of budgets) {
      const key = keyOf(u, budget)
      const steps = stepsAt(suite, budget)
      let config = trainConfig(suite, steps, evalEveryAt(suite, budget))
      const rec = begun.recommendation
      if (rec)
        config = {
          ...config,
          schedule: scheduleFromRecommendation(rec, steps),
          optimizer: { ...config.optimizer, lr: config.optimizer.lr * rec.peakLrScale },
        }
      if (u.lrMult !== undefined)
        config = { ...config, optimizer: { ...config.optimizer, lr: config.optimizer.lr * u.lrMult } }
      const run: MethodRun = {
        ...begun.record,
        budget,
        steps,
        lr: config.optimizer.lr,
        ...(u.lrMult === undefined ? {} : { lrMult: u.lrMult }),
        curve: [
          {
            step: 0,
            flops: begun.record.growthFlops,
            seconds: begun.record.growthSeconds,
            valLoss: initialLoss,
          },
        ],
        finalValLoss: null,
      }
      // Every budget replays the same data order from the start.
      data.train.seek(firstBatch)
      const metrics = metricsFile(out, key)
      rmSync(metrics, { force: true })
      progress.startRun(key, steps)
      try {
        const r = await train({
          model: begun.model,
          train: data.train,
          val,
          config,
          optimizerState: begun.optimizerState,
          mask: begun.mask,
          flopOffset: run.growthFlops,
          log: (l) => progress.log(`  ${key} ${l}`),
          progress: false,
          onMetrics: (row) => {
            progress.step(key, row.step, row.loss, row.valLoss)
            appendFileSync(
              metrics,
              `${JSON.stringify({ ...row, flops: run.growthFlops + row.flops, trainFlops: row.flops })}\n`,
            )
            if (row.valLoss !== null)
              run.curve.push({
                step: row.step,
                flops: run.growthFlops + row.flops,
                seconds: run.growthSeconds + row.seconds,
                valLoss: row.valLoss,
              })
          },
          shouldStop: stop,
        })
        disposeModel(r.model)
        if (r.stoppedBy === 'interrupted') return false
        run.finalValLoss = r.valLoss
        if (run.curve.at(-1)!.step !== r.state.step && r.valLoss !== null)
          run.curve.push({
            step: r.state.step,
            flops: run.growthFlops + r.state.flops,
            seconds: run.growthSeconds + r.state.seconds,
            valLoss: r.valLoss,
          })
      } finally {
        progress.endRun(key)
      }
      writeFileAtomic(runFile(out, key), JSON.stringify(run))
      if (stop()) return false
    }
    return true
  } finally {
    disposeModel(begun.model)
    if (begun.optimizerState) tf.dispose(Object.values(begun.optimizerState))
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}
