import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  type CommandIo,
  disposeModel,
  type GrowthOperator,
  lockOutput,
  type Model,
  SproutError,
  writeFileAtomic,
} from '@sprout/core'
import { checkOut, MACHINE_FILE, readRuns, readSources, runDirs, STOP_FILE, SUITE_FILE } from './layout.js'
import { plan, preflight, type Unit, type UnitContext, units } from './plan.js'
import { createBenchProgress } from './progress.js'
import { runProgressiveUnit } from './progressive.js'
import { describeMachine, type Machine, resultTable, writeReport } from './report.js'
import { pendingBudgets, runUnit } from './run.js'
import { isSourceDone, loadSource, pretrainSource } from './source.js'
import { loadSuite, type ResolvedSuite } from './suites.js'
import { runInWorkers, WORKER_ENV, type WorkerCommand, workerMessenger } from './workers.js'

/** Where bench commands print (core's CommandIo). */
export type Io = CommandIo

export interface CompareArgs {
  suite: string
  /** Comma-separated method names (default: scratch, every installed method, the suite's variants). */
  methods?: string
  out?: string
  json?: boolean
  resume?: boolean
  /** Repetitions with different seeds (default: the suite's, 3 for built-in suites but smoke). */
  seeds?: number
  /** Comma-separated fractions of the target steps, e.g. "0.25,0.5,1" (default: the suite's). */
  budgets?: string
  /** Units trained at once, each in its own process (default 1: in this process). */
  jobs?: number
  /** How a worker process is started (default: this process's own command line again). */
  worker?: WorkerCommand
}

function positiveInteger(flag: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isInteger(value) || value < 1)
    throw new SproutError('USAGE', `${flag} must be a positive integer (got ${value})`)
  return value
}

/** "0.25,0.5,1" → [0.25, 0.5, 1]; each a fraction in (0, 1]. */
export function parseBudgets(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim())
  if (parts.length === 0 || parts.some((p) => p === ''))
    throw new SproutError(
      'USAGE',
      `--budgets must be comma-separated fractions in (0, 1], e.g. 0.25,0.5,1 (got "${text}")`,
    )
  return parts.map((p) => {
    const b = Number(p)
    if (!Number.isFinite(b) || b <= 0 || b > 1)
      throw new SproutError(
        'USAGE',
        `--budgets: "${p}" is not a fraction in (0, 1] of the suite's target steps; e.g. --budgets 0.25,0.5,1`,
      )
    return b
  })
}

/** The suite with the command line's --seeds and --budgets applied (both part of what --resume checks). */
function suiteFor(args: CompareArgs): ResolvedSuite {
  const suite = loadSuite(args.suite)
  const seeds = positiveInteger('--seeds', args.seeds)
  const budgets = args.budgets === undefined ? undefined : parseBudgets(args.budgets)
  return { ...suite, ...(seeds ? { seeds } : {}), ...(budgets ? { budgets } : {}) }
}

const outDir = (args: CompareArgs, suite: ResolvedSuite) =>
  resolve(args.out ?? join('runs', `bench-${suite.name}`))

const readMachine = (dir: string): Machine | undefined =>
  existsSync(join(dir, MACHINE_FILE)) ? JSON.parse(readFileSync(join(dir, MACHINE_FILE), 'utf8')) : undefined

const SOURCE_UNIT = /^s(\d+)\/source$/

/**
 * Worker mode (a child started by --jobs): pretrains one seed's source, or trains one unit
 * against its seed's pretrained source, persists the result, and reports progress over IPC.
 */
async function runWorker(
  args: CompareArgs,
  operators: GrowthOperator<any>[],
  io: Io,
  key: string,
): Promise<void> {
  const suite = suiteFor(args)
  const out = outDir(args, suite)
  const messenger = workerMessenger(io.err, join(out, STOP_FILE))
  const ctx: UnitContext = { out, suite, operators, progress: messenger.progress, stop: messenger.stopped }
  let source: Model | undefined
  try {
    const sourceSeed = SOURCE_UNIT.exec(key)
    if (sourceSeed) {
      source = (await pretrainSource(suite, out, Number(sourceSeed[1]), ctx.progress, ctx.stop))?.model
      return
    }
    const unit = units(suite, plan(suite, operators, args.methods)).find((u) => u.key === key)
    if (!unit) throw new SproutError('USAGE', `bench worker: no planned unit named "${key}"`)
    if (needsSource(unit)) {
      if (!isSourceDone(out, unit.seed))
        throw new SproutError('IO', `bench worker: ${out} has no source for seed ${unit.seed}`)
      source = loadSource(out, unit.seed).model
    }
    await runAnyUnit(ctx, unit, source)
  } finally {
    messenger.close()
    if (source) disposeModel(source)
  }
}

/** A progressive line trains from scratch; every other line grows from the seed's source. */
const needsSource = (u: Unit) => !u.planned.progressive

/** The seeds whose source some pending unit grows from and that is not pretrained yet. */
const sourcesToPretrain = (out: string, pending: Unit[]) =>
  [...new Set(pending.filter(needsSource).map((u) => u.seed))].filter((s) => !isSourceDone(out, s))

const runAnyUnit = (ctx: UnitContext, u: Unit, source: Model | undefined) =>
  needsSource(u) ? runUnit(ctx, u, source!) : runProgressiveUnit(ctx, u)

/** Everything in this process: seed by seed, the source (if a unit needs it), then each unit. */
async function runInProcess(ctx: UnitContext, pending: Unit[]): Promise<void> {
  const seeds = [...new Set(pending.map((u) => u.seed))]
  for (const seed of seeds) {
    const mine = pending.filter((x) => x.seed === seed)
    let source: Model | undefined
    if (mine.some(needsSource)) {
      const sourced = await pretrainSource(ctx.suite, ctx.out, seed, ctx.progress, ctx.stop)
      if (!sourced) return
      source = sourced.model
    }
    try {
      for (const u of mine) {
        ctx.progress.log(`${u.key}`)
        if (!(await runAnyUnit(ctx, u, source))) return
      }
    } finally {
      if (source) disposeModel(source)
    }
  }
}

/** Sources first (one worker per seed), then every unit, `jobs` processes at a time. */
async function runWithWorkers(
  ctx: UnitContext,
  pending: Unit[],
  jobs: number,
  command: WorkerCommand,
): Promise<string[]> {
  const stopFile = join(ctx.out, STOP_FILE)
  const failed = await runInWorkers(
    sourcesToPretrain(ctx.out, pending).map((s) => `s${s}/source`),
    jobs,
    command,
    ctx.progress,
    ctx.stop,
    stopFile,
  )
  if (failed.length > 0 || ctx.stop()) return failed
  return runInWorkers(
    pending.map((u) => u.key),
    jobs,
    command,
    ctx.progress,
    ctx.stop,
    stopFile,
  )
}

/**
 * `sprout bench compare`: per seed, pretrains the suite's source once; then trains scratch (a
 * learning-rate sweep) and every method's grown model at each budget with the same data order,
 * schedule family and evaluation; writes results.json, metrics, report.md and plots.
 */
export async function runBenchCompare(
  args: CompareArgs,
  operators: GrowthOperator<any>[],
  io: Io,
): Promise<void> {
  const workerKey = process.env[WORKER_ENV]
  if (workerKey) return runWorker(args, operators, io, workerKey)
  const suite = suiteFor(args)
  const out = outDir(args, suite)
  const jobs = positiveInteger('--jobs', args.jobs) ?? 1
  const planned = plan(suite, operators, args.methods)
  const skipped = preflight(suite, planned, operators)
  // One comparison per folder at a time: a second `bench compare` into it is refused naming this process.
  const lock = lockOutput(out, (line) => io.err(line))
  try {
    await compareInto(out, args, { suite, operators, planned, skipped, jobs }, io)
  } finally {
    lock.release()
  }
}

async function compareInto(
  out: string,
  args: CompareArgs,
  plans: {
    suite: ResolvedSuite
    operators: GrowthOperator<any>[]
    planned: ReturnType<typeof plan>
    skipped: ReturnType<typeof preflight>
    jobs: number
  },
  io: Io,
): Promise<void> {
  const { suite, operators, planned, skipped, jobs } = plans
  checkOut(out, suite, args.resume)
  for (const d of runDirs(out)) mkdirSync(d, { recursive: true })
  writeFileAtomic(join(out, SUITE_FILE), JSON.stringify(suite, null, 2))
  if (!existsSync(join(out, MACHINE_FILE)))
    writeFileAtomic(join(out, MACHINE_FILE), JSON.stringify(describeMachine(), null, 2))
  for (const [name, reason] of skipped) io.err(`${name}: skipped: ${reason}`)
  const all = units(suite, planned)
  const pending = all.filter((u) => pendingBudgets(out, u).length > 0)
  // The overall bar counts training runs: every pending (unit, budget) and every source still to pretrain.
  const runCount =
    pending.reduce((n, u) => n + pendingBudgets(out, u).length, 0) + sourcesToPretrain(out, pending).length
  const progress = createBenchProgress(runCount, process.stderr.isTTY === true, io.err)
  if (pending.length < all.length)
    progress.log(`${all.length - pending.length} of ${all.length} units done earlier, kept`)
  let interrupted = false
  const onSigint = () => {
    interrupted = true
    progress.log('interrupt: stopping after the current step; rerun with --resume to continue')
    process.off('SIGINT', onSigint)
  }
  process.on('SIGINT', onSigint)
  const ctx: UnitContext = { out, suite, operators, progress, stop: () => interrupted }
  try {
    if (jobs === 1) await runInProcess(ctx, pending)
    else {
      const failed = await runWithWorkers(
        ctx,
        pending,
        jobs,
        args.worker ?? { script: process.argv[1], args: process.argv.slice(2), execArgv: process.execArgv },
      )
      if (failed.length > 0 && !interrupted)
        throw new SproutError(
          'IO',
          `bench workers failed: ${failed.join('; ')}; finished runs are saved in ${out}; fix and rerun with --resume`,
        )
    }
  } finally {
    progress.stop()
    process.off('SIGINT', onSigint)
  }
  if (interrupted)
    throw new SproutError(
      'INTERRUPTED',
      `interrupted; finished runs are saved in ${out}; continue with --resume`,
    )
  const results = await writeReport(
    out,
    suite,
    readSources(out, suite.seeds),
    readRuns(out),
    readMachine(out),
    operators,
  )
  for (const line of resultTable(results)) io.out(line)
  io.out(`report: ${join(out, 'report.md')}`)
  if (args.json) io.out(JSON.stringify({ out, ...results }))
}

/** `sprout bench report DIR`: re-renders report.md and the plots from a finished comparison. */
export async function runBenchReport(
  args: { dir: string },
  io: Io,
  operators: GrowthOperator<any>[] = [],
): Promise<void> {
  const dir = resolve(args.dir)
  const suiteFile = join(dir, SUITE_FILE)
  if (!existsSync(suiteFile))
    throw new SproutError('INPUT_INVALID', `${args.dir} is not a comparison directory (no suite.json)`)
  const suite = JSON.parse(readFileSync(suiteFile, 'utf8')) as ResolvedSuite
  const sources = readSources(dir, suite.seeds)
  if (sources.every((s) => s === null))
    throw new SproutError('INPUT_INVALID', `${args.dir}: the comparison has no finished source run yet`)
  const results = await writeReport(dir, suite, sources, readRuns(dir), readMachine(dir), operators)
  for (const line of resultTable(results)) io.out(line)
  io.out(`report: ${join(dir, 'report.md')}`)
}
