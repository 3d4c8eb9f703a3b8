import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  type Batch,
  disposeModel,
  FlopMeter,
  type GrowthContext,
  GrowthError,
  type GrowthMask,
  type GrowthOperator,
  initModel,
  loadCheckpoint,
  type Model,
  parseOptions,
  SeededRandom,
  SproutError,
  saveCheckpoint,
  type TransformerSpec,
  writeFileAtomic,
} from '@sprout/core'
import { openDataset } from '@sprout/data'
import {
  createFit,
  evaluateMasked,
  scheduleFromRecommendation,
  type TrainConfig,
  train,
} from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { type BenchProgress, createBenchProgress } from './progress.js'
import { describeMachine, type Machine, writeReport } from './report.js'
import { loadSuite, type ResolvedSuite } from './suites.js'
import { runInWorkers, WORKER_ENV, type WorkerCommand, workerMessenger } from './workers.js'

export interface Io {
  out(line: string): void
  err(line: string): void
}

export interface CompareArgs {
  suite: string
  /** Comma-separated method names (default: scratch, every installed method, the suite's variants). */
  methods?: string
  out?: string
  json?: boolean
  resume?: boolean
  /** Methods trained at once, each in its own process (default 1: in this process). */
  jobs?: number
  /** How a worker process is started (default: this process's own command line again). */
  worker?: WorkerCommand
}

/** One method's run, persisted as runs/<name>.json as soon as it finishes. */
export interface MethodRun {
  name: string
  method: string
  status: 'done' | 'skipped'
  reason?: string
  /** Target spec when it differs from the suite's (variants). */
  variantTarget?: TransformerSpec
  growthFlops: number
  growthSeconds: number
  /** Validation curve from the start of target training (growth included in flops/seconds). */
  curve: { step: number; flops: number; seconds: number; valLoss: number }[]
  finalValLoss: number | null
  schedule: 'suite' | 'recommended'
  scheduleNote?: string
  details?: Record<string, unknown>
}

export interface SourceRun {
  steps: number
  flops: number
  seconds: number
  valLoss: number
}

const RUNS = 'runs'
/** Written by the parent on Ctrl-C; workers check it at every step. */
const STOP_FILE = 'STOP'

function trainConfig(suite: ResolvedSuite): TrainConfig {
  return {
    steps: suite.targetSteps,
    optimizer: { kind: 'adamw', ...suite.optimizer },
    schedule: suite.schedule,
    clipNorm: suite.clipNorm,
    evalEvery: suite.evalEvery,
    evalBatches: suite.evalBatches,
  }
}

async function dataFor(suite: ResolvedSuite, spec: TransformerSpec, seed: number) {
  return openDataset(suite.data, spec, {
    batchSize: suite.batchSize,
    seqLen: suite.seqLen,
    seed,
    tokenizer: suite.tokenizer,
  })
}

/** Pretrains the source once per output directory; later runs and --resume reuse it. */
async function sourceModel(
  suite: ResolvedSuite,
  out: string,
  progress: BenchProgress,
  stop: () => boolean,
): Promise<{ model: Model; run: SourceRun }> {
  const dir = join(out, 'source')
  const done = join(dir, 'done.json')
  if (existsSync(done)) {
    progress.log('source: reusing the pretrained source model')
    return { model: loadCheckpoint(join(dir, 'model')).model, run: JSON.parse(readFileSync(done, 'utf8')) }
  }
  const data = await dataFor(suite, suite.source, suite.seed + 100)
  const val = data.valBatches(suite.evalBatches)
  const init = initModel(suite.source, suite.seed + 100)
  progress.log(`source: pretraining for ${suite.sourceSteps} steps (reported separately)`)
  progress.startRun('source', suite.sourceSteps)
  try {
    const r = await train({
      model: init,
      train: data.train,
      val,
      config: { ...trainConfig(suite), steps: suite.sourceSteps },
      log: (l) => progress.log(`  source ${l}`),
      progress: false,
      onMetrics: (row) => progress.step('source', row.step, row.loss, row.valLoss),
      shouldStop: stop,
    })
    if (r.stoppedBy === 'interrupted') {
      disposeModel(r.model)
      throw new SproutError('USAGE', 'interrupted while pretraining the source; rerun with --resume')
    }
    await saveCheckpoint(join(dir, 'model'), r.model, { meta: { createdBy: 'sprout bench compare: source' } })
    const run: SourceRun = {
      steps: r.state.step,
      flops: r.state.flops,
      seconds: r.state.seconds,
      valLoss: r.valLoss!,
    }
    writeFileAtomic(done, JSON.stringify(run))
    return { model: r.model, run }
  } finally {
    progress.endRun('source')
    disposeModel(init)
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}

function growthContext(
  seed: number,
  log: (line: string) => void,
  name: string,
  batches: GrowthContext['batches'],
  fit: GrowthContext['fit'],
): GrowthContext {
  return {
    seed,
    random: new SeededRandom(seed),
    flops: new FlopMeter(),
    batches,
    fit,
    progress: (e) => {
      if (e.step !== undefined && e.total !== undefined && e.total > 1 && e.step === e.total)
        log(
          `  ${name}: ${e.stage} ${e.step}/${e.total}${e.loss !== undefined ? ` loss ${e.loss.toFixed(4)}` : ''}`,
        )
    },
    log: (m) => log(`  ${name}: ${m}`),
  }
}

/** One run of the comparison: scratch, a method on the suite's target, or a variant. */
export interface Planned {
  name: string
  method: string
  target: TransformerSpec
  options: Record<string, unknown>
  variant: boolean
}

function plan(suite: ResolvedSuite, operators: GrowthOperator<any>[], only?: string): Planned[] {
  const all: Planned[] = [
    { name: 'scratch', method: 'scratch', target: suite.target, options: {}, variant: false },
    ...operators
      .filter((op) => op.name !== 'identity')
      .map((op) => ({
        name: op.name,
        method: op.name,
        target: suite.target,
        options: suite.methods[op.name] ?? {},
        variant: false,
      })),
    // A variant on the suite's own target is just another configuration (e.g. stack's MSG mode)
    // and is measured like any method; one on another target claims no saving.
    ...suite.variants.map((v) => ({
      name: v.name,
      method: v.method,
      target: v.target,
      options: v.options,
      variant: JSON.stringify(v.target) !== JSON.stringify(suite.target),
    })),
  ]
  if (!only) return all
  const wanted = only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const w of wanted)
    if (!all.some((p) => p.name === w))
      throw new SproutError(
        'USAGE',
        `--methods: "${w}" is not available; choose from ${all.map((p) => p.name).join(', ')}`,
      )
  if (!wanted.includes('scratch')) wanted.unshift('scratch')
  return all.filter((p) => wanted.includes(p.name))
}

/**
 * Before anything is written: a method option in the suite that the operator rejects is the
 * user's mistake (an error naming the field); a growth the operator cannot do is a skip.
 */
function preflight(suite: ResolvedSuite, planned: Planned[], operators: GrowthOperator<any>[]) {
  const skipped = new Map<string, string>()
  for (const p of planned) {
    if (p.method === 'scratch') continue
    const op = operators.find((o) => o.name === p.method)
    if (!op) {
      skipped.set(p.name, `method ${p.method} is not installed`)
      continue
    }
    let options: Record<string, unknown>
    try {
      options = parseOptions(op, p.options)
    } catch (e) {
      const field = p.name === p.method ? `methods.${p.name}` : `variants (${p.name}).options`
      throw new SproutError('INPUT_INVALID', `suite ${suite.name}: ${field}: ${(e as Error).message}`)
    }
    try {
      op.check(suite.source, p.target, options)
    } catch (e) {
      if (!(e instanceof GrowthError)) throw e
      skipped.set(p.name, e.message)
    }
  }
  return skipped
}

/** A run record with nothing measured yet (growth and training fill it in). */
function emptyRun(p: Planned): MethodRun {
  return {
    name: p.name,
    method: p.method,
    status: 'done',
    growthFlops: 0,
    growthSeconds: 0,
    curve: [],
    finalValLoss: null,
    schedule: 'suite',
    ...(p.variant ? { variantTarget: p.target } : {}),
  }
}

function skippedRun(p: Planned, reason: string): MethodRun {
  return { ...emptyRun(p), status: 'skipped', reason }
}

/** Grows (unless scratch) and trains one planned run; null when interrupted. */
async function runMethod(
  out: string,
  suite: ResolvedSuite,
  p: Planned,
  source: Model,
  operators: GrowthOperator<any>[],
  progress: BenchProgress,
  stop: () => boolean,
): Promise<MethodRun | null> {
  progress.startRun(p.name, suite.targetSteps)
  try {
    return await growAndTrain(out, suite, p, source, operators, progress, stop)
  } finally {
    progress.endRun(p.name)
  }
}

async function growAndTrain(
  out: string,
  suite: ResolvedSuite,
  p: Planned,
  source: Model,
  operators: GrowthOperator<any>[],
  progress: BenchProgress,
  stop: () => boolean,
): Promise<MethodRun | null> {
  const base = emptyRun(p)
  const op = operators.find((o) => o.name === p.method)
  if (p.method !== 'scratch' && !op) return skippedRun(p, `method ${p.method} is not installed`)
  let model: Model
  let config = trainConfig(suite)
  let optimizerState: Record<string, tf.Tensor> | undefined
  let mask: GrowthMask | undefined
  if (!op) {
    model = initModel(p.target, suite.seed)
  } else {
    let options: Record<string, unknown>
    try {
      options = parseOptions(op, p.options)
      op.check(source.spec, p.target, options)
    } catch (e) {
      if (e instanceof GrowthError) return skippedRun(p, e.message)
      throw e
    }
    const fitData = op.capabilities.learned ? await dataFor(suite, p.target, suite.seed + 200) : null
    const ctx = growthContext(
      suite.seed,
      progress.log,
      p.name,
      fitData?.train,
      fitData ? createFit(fitData.train) : undefined,
    )
    const start = performance.now()
    const result = await op.grow(source, p.target, ctx, options)
    base.growthSeconds = (performance.now() - start) / 1000
    base.growthFlops = result.report.growthFlops
    base.details = result.report.details
    model = result.model
    mask = result.mask
    if (result.schedule) {
      config = {
        ...config,
        schedule: scheduleFromRecommendation(result.schedule, suite.targetSteps),
        optimizer: { ...config.optimizer, lr: config.optimizer.lr * result.schedule.peakLrScale },
      }
      base.schedule = 'recommended'
      base.scheduleNote = result.schedule.note
    }
    if (result.optimizerState && !result.schedule?.freshOptimizer) optimizerState = result.optimizerState
    else if (result.optimizerState) tf.dispose(Object.values(result.optimizerState))
  }
  const data = await dataFor(suite, p.target, suite.seed)
  const val: Batch[] = data.valBatches(suite.evalBatches)
  const metricsFile = join(out, 'metrics', `${p.name}.jsonl`)
  rmSync(metricsFile, { force: true })
  try {
    // The grown model as training first sees it (a growth mask starts at 0).
    const start = evaluateMasked(model, val, mask, 0)
    base.curve.push({ step: 0, flops: base.growthFlops, seconds: base.growthSeconds, valLoss: start.loss })
    const r = await train({
      model,
      train: data.train,
      val,
      config,
      optimizerState,
      mask,
      flopOffset: base.growthFlops,
      log: (l) => progress.log(`  ${p.name} ${l}`),
      progress: false,
      onMetrics: (row) => {
        progress.step(p.name, row.step, row.loss, row.valLoss)
        appendFileSync(
          metricsFile,
          `${JSON.stringify({ ...row, flops: base.growthFlops + row.flops, trainFlops: row.flops })}\n`,
        )
        if (row.valLoss !== null)
          base.curve.push({
            step: row.step,
            flops: base.growthFlops + row.flops,
            seconds: base.growthSeconds + row.seconds,
            valLoss: row.valLoss,
          })
      },
      shouldStop: stop,
    })
    disposeModel(r.model)
    if (r.stoppedBy === 'interrupted') return null
    base.finalValLoss = r.valLoss
    if (base.curve.at(-1)!.step !== r.state.step && r.valLoss !== null)
      base.curve.push({
        step: r.state.step,
        flops: base.growthFlops + r.state.flops,
        seconds: base.growthSeconds + r.state.seconds,
        valLoss: r.valLoss,
      })
    return base
  } finally {
    disposeModel(model)
    if (optimizerState) tf.dispose(Object.values(optimizerState))
    tf.dispose(val.flatMap((b) => Object.values(b)))
  }
}

function checkOut(out: string, suite: ResolvedSuite, resume: boolean | undefined): void {
  if (!existsSync(out)) return
  const suiteFile = join(out, 'suite.json')
  if (existsSync(suiteFile)) {
    const previous = JSON.parse(readFileSync(suiteFile, 'utf8'))
    if (JSON.stringify(previous) !== JSON.stringify(suite))
      throw new SproutError(
        'IO',
        `--out ${out} holds a comparison of a different suite ("${previous.name}"); choose another --out`,
      )
    if (!resume)
      throw new SproutError(
        'IO',
        `--out ${out} already holds this comparison; pass --resume to continue it or choose another --out`,
      )
  } else if (readdirSync(out).length > 0) {
    throw new SproutError('IO', `--out ${out} exists and is not a comparison; choose another --out`)
  }
}

function checkJobs(jobs: number | undefined): number {
  if (jobs === undefined) return 1
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new SproutError('USAGE', `--jobs must be a positive integer (got ${jobs})`)
  return jobs
}

const runFile = (out: string, name: string) => join(out, RUNS, `${name}.json`)

const MACHINE_FILE = 'machine.json'
const readMachine = (dir: string): Machine | undefined =>
  existsSync(join(dir, MACHINE_FILE)) ? JSON.parse(readFileSync(join(dir, MACHINE_FILE), 'utf8')) : undefined

/**
 * Worker mode (a child started by --jobs): trains the one planned run named in the environment
 * against the parent's pretrained source, persists it, and reports progress over IPC.
 */
async function runWorker(
  args: CompareArgs,
  operators: GrowthOperator<any>[],
  io: Io,
  name: string,
): Promise<void> {
  const suite = loadSuite(args.suite)
  const out = resolve(args.out ?? join('runs', `bench-${suite.name}`))
  const p = plan(suite, operators, args.methods).find((x) => x.name === name)
  if (!p) throw new SproutError('USAGE', `bench worker: no planned run named "${name}"`)
  if (!existsSync(join(out, 'source', 'done.json')))
    throw new SproutError('IO', `bench worker: ${out} has no pretrained source`)
  const messenger = workerMessenger(io.err, join(out, STOP_FILE))
  const source = loadCheckpoint(join(out, 'source', 'model')).model
  try {
    const run = await runMethod(out, suite, p, source, operators, messenger.progress, messenger.stopped)
    if (run) writeFileAtomic(runFile(out, name), JSON.stringify(run))
  } finally {
    messenger.close()
    disposeModel(source)
  }
}

/**
 * `sprout bench compare`: pretrains the suite's source once, then trains scratch and every
 * method's grown model with the same data order, schedule family and evaluation, and writes
 * results.json, metrics, report.md and plots to the output directory.
 */
export async function runBenchCompare(
  args: CompareArgs,
  operators: GrowthOperator<any>[],
  io: Io,
): Promise<void> {
  const workerName = process.env[WORKER_ENV]
  if (workerName) return runWorker(args, operators, io, workerName)
  const suite = loadSuite(args.suite)
  const out = resolve(args.out ?? join('runs', `bench-${suite.name}`))
  const planned = plan(suite, operators, args.methods)
  const jobs = checkJobs(args.jobs)
  const skipped = preflight(suite, planned, operators)
  checkOut(out, suite, args.resume)
  mkdirSync(join(out, RUNS), { recursive: true })
  mkdirSync(join(out, 'metrics'), { recursive: true })
  writeFileAtomic(join(out, 'suite.json'), JSON.stringify(suite, null, 2))
  writeFileAtomic(join(out, MACHINE_FILE), JSON.stringify(describeMachine(), null, 2))
  for (const p of planned) {
    const reason = skipped.get(p.name)
    if (reason === undefined || existsSync(runFile(out, p.name))) continue
    io.err(`${p.name}: skipped: ${reason}`)
    writeFileAtomic(runFile(out, p.name), JSON.stringify(skippedRun(p, reason)))
  }
  const pending = planned.filter((p) => !existsSync(runFile(out, p.name)))
  const progress = createBenchProgress(pending.length + 1, process.stderr.isTTY === true, io.err)
  let interrupted = false
  const onSigint = () => {
    interrupted = true
    progress.log('interrupt: stopping after the current step; rerun with --resume to continue')
    process.off('SIGINT', onSigint)
  }
  process.on('SIGINT', onSigint)
  const stop = () => interrupted
  let sourceRun: SourceRun | undefined
  try {
    const sourced = await sourceModel(suite, out, progress, stop)
    sourceRun = sourced.run
    for (const p of planned)
      if (!pending.includes(p) && !skipped.has(p.name)) progress.log(`${p.name}: done earlier, kept`)
    if (jobs === 1) {
      try {
        for (const [i, p] of pending.entries()) {
          progress.log(`[${i + 1}/${pending.length}] ${p.name}`)
          const run = await runMethod(out, suite, p, sourced.model, operators, progress, stop)
          if (!run) break
          if (run.status === 'skipped') progress.log(`  ${p.name}: skipped: ${run.reason}`)
          writeFileAtomic(runFile(out, p.name), JSON.stringify(run))
          if (interrupted) break
        }
      } finally {
        disposeModel(sourced.model)
      }
    } else {
      disposeModel(sourced.model)
      const failed = await runInWorkers(
        pending.map((p) => p.name),
        jobs,
        args.worker ?? { script: process.argv[1], args: process.argv.slice(2), execArgv: process.execArgv },
        progress,
        stop,
        join(out, STOP_FILE),
      )
      if (failed.length > 0 && !interrupted)
        throw new SproutError(
          'IO',
          `bench workers failed: ${failed.join('; ')}; finished methods are saved in ${out}; fix and rerun with --resume`,
        )
    }
  } finally {
    progress.stop()
    process.off('SIGINT', onSigint)
  }
  if (interrupted)
    throw new SproutError(
      'USAGE',
      `interrupted; finished methods are saved in ${out}; continue with --resume`,
    )
  const runs: MethodRun[] = planned
    .map((p) => runFile(out, p.name))
    .filter((f) => existsSync(f))
    .map((f) => JSON.parse(readFileSync(f, 'utf8')))
  const results = await writeReport(out, suite, sourceRun!, runs, readMachine(out))
  for (const line of results.table) io.out(line)
  io.out(`report: ${join(out, 'report.md')}`)
  if (args.json) io.out(JSON.stringify({ suite: suite.name, out, methods: results.methods }))
}

/** `sprout bench report DIR`: re-renders report.md and the plots from a finished comparison. */
export async function runBenchReport(args: { dir: string }, io: Io): Promise<void> {
  const dir = resolve(args.dir)
  const suiteFile = join(dir, 'suite.json')
  if (!existsSync(suiteFile))
    throw new SproutError('INPUT_INVALID', `${args.dir} is not a comparison directory (no suite.json)`)
  const suite = JSON.parse(readFileSync(suiteFile, 'utf8')) as ResolvedSuite
  const sourceFile = join(dir, 'source', 'done.json')
  if (!existsSync(sourceFile))
    throw new SproutError('INPUT_INVALID', `${args.dir}: the comparison has no finished source run yet`)
  const runs: MethodRun[] = readdirSync(join(dir, RUNS))
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(dir, RUNS, f), 'utf8')))
  const results = await writeReport(
    dir,
    suite,
    JSON.parse(readFileSync(sourceFile, 'utf8')),
    runs,
    readMachine(dir),
  )
  for (const line of results.table) io.out(line)
  io.out(`report: ${join(dir, 'report.md')}`)
}
