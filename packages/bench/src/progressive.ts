import { appendFileSync, rmSync } from 'node:fs'
import {
  type Batch,
  disposeModel,
  type GrowthOperator,
  initModel,
  SproutError,
  writeFileAtomic,
} from '@sprout/core'
import { evaluate, planStages, type StageConfig, trainProgressive } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { metricsFile, runFile } from './layout.js'
import { evalEveryAt, stepsAt, type Unit, type UnitContext } from './plan.js'
import type { MethodRun } from './records.js'
import { keyOf, pendingBudgets, skippedRun } from './run.js'
import { dataFor, seedValue, trainConfig } from './source.js'
import type { ProgressiveLine } from './suites.js'

/** A progressive line's stages at a run of `steps` steps: fractions become whole steps. */
export function stagesAt(line: ProgressiveLine, steps: number): StageConfig[] {
  return line.stages.map((st) => ({
    atStep: st.at === 'auto' ? 'auto' : Math.max(1, Math.round(st.at * steps)),
    method: st.method,
    target: st.target as unknown as Record<string, unknown>,
    options: st.options,
    schedule: 'continue',
    optimizer: st.optimizer,
  }))
}

const resolverOf = (operators: GrowthOperator<any>[]) => async (ref: string) => {
  const op = operators.find((o) => o.name === ref)
  if (!op) throw new SproutError('USAGE', `method ${ref} is not installed`)
  return op
}

/**
 * A progressive line at each pending budget: from scratch at the line's start spec, on the same
 * data order, schedule family and evaluation as scratch, growing at its stages (whose FLOPs,
 * fitting included, the trainer adds to the run's). Returns false when interrupted.
 */
export async function runProgressiveUnit(ctx: UnitContext, u: Unit): Promise<boolean> {
  const { out, suite, operators, progress, stop } = ctx
  const budgets = pendingBudgets(out, u)
  if (budgets.length === 0) return true
  const line = u.planned.progressive!
  const value = seedValue(suite, u.seed)
  // The same batches, in the same order, as scratch of this seed.
  const data = await dataFor(suite, suite.target, value)
  const val: Batch[] = data.valBatches(suite.evalBatches)
  const firstBatch = data.train.cursor()
  const seqLen = suite.seqLen ?? suite.target.maxSeqLen
  try {
    for (const budget of budgets) {
      const key = keyOf(u, budget)
      const steps = stepsAt(suite, budget)
      let planned: Awaited<ReturnType<typeof planStages>>
      try {
        planned = await planStages(
          stagesAt(line, steps),
          {
            spec: line.start,
            steps,
            tokensPerStep: suite.batchSize * seqLen,
            seqLen,
            examplesPerStep: suite.batchSize,
          },
          resolverOf(operators),
        )
      } catch (e) {
        // E.g. "auto" timing beyond a short budget: that budget has no run, the others do.
        if (!(e instanceof SproutError)) throw e
        writeFileAtomic(runFile(out, key), JSON.stringify(skippedRun(u, suite, budget, e.message)))
        progress.log(`${key}: skipped: ${e.message}`)
        continue
      }
      const config = trainConfig(suite, steps, evalEveryAt(suite, budget))
      const model = initModel(line.start, value)
      const run: MethodRun = {
        name: u.planned.name,
        method: u.planned.method,
        seed: u.seed,
        budget,
        steps,
        lr: config.optimizer.lr,
        status: 'done',
        growthFlops: 0,
        growthSeconds: 0,
        curve: [{ step: 0, flops: 0, seconds: 0, valLoss: evaluate(model, val).loss }],
        finalValLoss: null,
        schedule: 'suite',
        stages: [],
      }
      data.train.seek(firstBatch)
      const metrics = metricsFile(out, key)
      rmSync(metrics, { force: true })
      progress.startRun(key, steps)
      try {
        const r = await trainProgressive({
          model,
          train: data.train,
          val,
          config,
          stages: planned,
          seed: value,
          log: (l) => progress.log(`  ${key} ${l}`),
          progress: false,
          onMetrics: (row) => {
            progress.step(key, row.step, row.loss, row.valLoss)
            appendFileSync(metrics, `${JSON.stringify(row)}\n`)
            if (row.valLoss !== null)
              run.curve.push({ step: row.step, flops: row.flops, seconds: row.seconds, valLoss: row.valLoss })
          },
          shouldStop: stop,
        })
        disposeModel(r.model)
        if (r.stoppedBy === 'interrupted') return false
        run.finalValLoss = r.valLoss
        run.stages = r.stages.map((s) => ({
          step: s.step,
          method: s.method,
          growthFlops: s.growthFlops,
          seconds: s.seconds,
          valLossBefore: s.valLossBefore,
          valLossAfter: s.valLossAfter,
        }))
        run.growthFlops = r.stages.reduce((n, s) => n + s.growthFlops, 0)
        run.growthSeconds = r.stages.reduce((n, s) => n + s.seconds, 0)
        if (run.curve.at(-1)!.step !== r.state.step && r.valLoss !== null)
          run.curve.push({
            step: r.state.step,
            flops: r.state.flops,
            seconds: r.state.seconds,
            valLoss: r.valLoss,
          })
      } finally {
        disposeModel(model)
        progress.endRun(key)
      }
      writeFileAtomic(runFile(out, key), JSON.stringify(run))
      if (stop()) return false
    }
    return true
  } finally {
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}
