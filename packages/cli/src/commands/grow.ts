import {
  applyMask,
  assertFitsMemory,
  type CommandIo,
  disposeModel,
  estimateGrowthBytes,
  FlopMeter,
  formatFlops,
  type GrowthContext,
  type GrowthMask,
  loadCheckpoint,
  type Model,
  maxAbsLogitDiff,
  type OperatorRegistry,
  parseOptionPairs,
  parseOptions,
  prepareOutput,
  readCheckpointInfo,
  readSpecFile,
  SeededRandom,
  saveCheckpoint,
  specSummary,
} from '@sprout/core'
import { dataContext } from '../data.js'
import { resolveMethod } from '../methods.js'

export interface GrowArgs {
  method: string
  from: string
  target: string
  out: string
  option?: string[]
  verify?: boolean
  json?: boolean
  data?: string
  batchSize?: number
  seed: number
  force?: boolean
}

/** Source vs grown logits; a masked model (new structure fading in) is compared at mask 0, where training starts. */
function verifyDiff(source: Model, grown: Model, mask: GrowthMask | undefined): number {
  const view = applyMask(grown, mask, 0)
  try {
    return maxAbsLogitDiff(source, view)
  } finally {
    for (const [n, t] of Object.entries(view.params)) if (t !== grown.params[n]) t.dispose()
  }
}

export async function runGrow(args: GrowArgs, registry: OperatorRegistry, io: CommandIo): Promise<void> {
  const op = await resolveMethod(args.method, registry)
  const target = readSpecFile(args.target)
  const options = parseOptions(op, parseOptionPairs(args.option ?? []))
  // Sized before anything is written or locked: a growth that cannot fit is refused at once.
  const need = estimateGrowthBytes(readCheckpointInfo(args.from).spec, target)
  assertFitsMemory(need.bytes, `growing into ${specSummary(target)}`, need.breakdown)
  // Locked from here to the end: a second writer to --out is refused at once, naming this process.
  const log = (line: string) => io.err(line)
  const lock = prepareOutput(args.out, { force: args.force, log })
  let source: Model
  try {
    source = loadCheckpoint(args.from).model
  } catch (e) {
    lock.release()
    throw e
  }
  try {
    op.check(source.spec, target, options)
    const flops = new FlopMeter()
    const base: GrowthContext = {
      seed: args.seed,
      random: new SeededRandom(args.seed),
      flops,
      progress: (e) => {
        if (
          e.step !== undefined &&
          e.total !== undefined &&
          e.total > 1 &&
          (e.step % Math.max(1, Math.floor(e.total / 10)) === 0 || e.step === e.total)
        )
          io.err(
            `  ${e.stage} ${e.step}/${e.total}${e.loss !== undefined ? ` loss ${e.loss.toFixed(4)}` : ''}`,
          )
      },
      log: (m) => io.err(`  ${m}`),
    }
    const ctx = args.data ? await dataContext(base, args.data, target, args.seed, args.batchSize) : base
    io.err(`growing ${specSummary(source.spec)} -> ${specSummary(target)} with ${op.name}`)
    const start = performance.now()
    const result = await op.grow(source, target, ctx, options)
    const seconds = (performance.now() - start) / 1000
    try {
      const diff = args.verify ? verifyDiff(source, result.model, result.mask) : result.report.maxAbsLogitDiff
      const report = { ...result.report, maxAbsLogitDiff: diff ?? null, seconds }
      await saveCheckpoint(args.out, result.model, {
        meta: {
          createdBy: `sprout grow --method ${op.name}`,
          growth: report,
          options,
          source: args.from,
          schedule: result.schedule ?? null,
          mask: result.mask ?? null,
          // Which parameters are new (for the trainer's "freeze": ["source"]); null: not recorded.
          newParams: result.newParams ?? null,
        },
        state: result.optimizerState,
        log,
      })
      io.out(
        `grew ${specSummary(source.spec)} -> ${specSummary(result.model.spec)} with ${op.name} in ${seconds.toFixed(2)} s`,
      )
      io.out(
        `  growth compute: ${formatFlops(report.growthFlops)}${report.steps ? ` (${report.steps} operator steps)` : ''}`,
      )
      if (args.verify) {
        const ok = diff !== null && diff !== undefined && diff < 1e-4
        io.out(
          `  maxAbsLogitDiff: ${diff?.toExponential(3)} (${ok ? 'function preserved' : op.capabilities.functionPreserving ? 'NOT preserved: the method claims it is' : 'not function preserving, as declared'})`,
        )
      }
      if (result.schedule) io.out(`  recommended schedule: ${result.schedule.note}`)
      io.out(`  saved to ${args.out}`)
      if (args.json)
        io.out(
          JSON.stringify({
            method: op.name,
            source: source.spec,
            target: result.model.spec,
            maxAbsLogitDiff: report.maxAbsLogitDiff,
            growthFlops: report.growthFlops,
            seconds,
            out: args.out,
            steps: report.steps,
            details: report.details,
          }),
        )
    } finally {
      disposeModel(result.model)
      if (result.optimizerState) for (const t of Object.values(result.optimizerState)) t.dispose()
    }
  } finally {
    disposeModel(source)
    lock.release()
  }
}
