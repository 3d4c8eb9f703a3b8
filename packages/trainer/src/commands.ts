import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  assertFitsMemory,
  type CommandIo,
  checkOutputPath,
  disposeModel,
  estimateTrainingBytes,
  explainNonFinite,
  formatFlops,
  fsError,
  type GrowthContext,
  type GrowthMask,
  initModel,
  loadCheckpoint,
  lockOutput,
  type Model,
  parseSpec,
  processAlive,
  readCheckpointInfo,
  readJsonFile,
  readSpecFile,
  recoverOutput,
  SproutError,
  specSummary,
  type TransformerSpec,
  withFsErrors,
  writeFileAtomic,
} from '@sprout/core'
import { type Dataset, openDataset, type TokenizerName } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { parseRunConfig, type RunConfig, readRunConfig } from './config.js'
import { createFit } from './fit.js'
import { resolveFrozen } from './freeze.js'
import {
  CHECKPOINT_DIR,
  evaluate,
  type TrainerState,
  type TrainOptions,
  type TrainResult,
  train,
} from './loop.js'
import {
  type OperatorResolver,
  type PlannedStage,
  planStages,
  type StageRecord,
  trainProgressive,
} from './stages.js'

export interface TrainArgs {
  config?: string
  resume?: string
  out?: string
  steps?: number
  checkpointEvery?: number
  seed?: number
  json?: boolean
  /** Force the progress bar on/off (default: when stderr is a TTY). */
  progress?: boolean
  /** Resolves the methods of a config's growth `stages` (the CLI passes its plugin resolver). */
  resolveMethod?: OperatorResolver
}

const RUN_FILE = 'run.json'

function readSpecArg(spec: string | Record<string, unknown>): TransformerSpec {
  return typeof spec === 'string' ? readSpecFile(spec) : parseSpec(spec)
}

/** What a checkpoint's meta says about growth: the mask (MSG-style stacking) and the new parameters. */
function growthMeta(meta: Record<string, unknown>): { mask?: GrowthMask; newParams: string[] | null } {
  const m = meta as { mask?: GrowthMask | null; newParams?: string[] | null }
  return { mask: m.mask ?? undefined, newParams: m.newParams ?? null }
}

/** Refuses a run whose training step cannot fit the memory limit, before the model or a batch exists. */
function checkTrainingFits(config: RunConfig, spec: TransformerSpec): void {
  const need = estimateTrainingBytes(spec, {
    batchSize: config.batchSize,
    seqLen: config.seqLen ?? spec.maxSeqLen,
    optimizer: config.optimizer.kind,
  })
  assertFitsMemory(need.bytes, `training ${specSummary(spec)}`, need.breakdown)
}

/** The model to train, the growth mask its checkpoint carries and the parameters growth added. */
function initialModel(config: RunConfig): { model: Model; mask?: GrowthMask; newParams: string[] | null } {
  if (config.from === undefined) {
    const spec = readSpecArg(config.spec!)
    checkTrainingFits(config, spec)
    return { model: initModel(spec, config.seed), newParams: null }
  }
  checkTrainingFits(config, readCheckpointInfo(config.from).spec)
  const ckpt = loadCheckpoint(config.from)
  if (ckpt.state) tf.dispose(Object.values(ckpt.state))
  return { model: ckpt.model, ...growthMeta(ckpt.meta) }
}

/**
 * What `--config … --out DIR` finds in DIR: nothing (a new run), a run that died before its first
 * checkpoint (restarted in place), or something it must not touch (refused).
 */
function existingRun(out: string): 'none' | 'restart' {
  if (!existsSync(out)) return 'none'
  if (!statSync(out).isDirectory())
    throw new SproutError('IO', `--out ${out} exists and is a file; choose another directory`)
  if (existsSync(join(out, RUN_FILE))) {
    if (!hasCheckpoint(out)) return 'restart'
    throw new SproutError(
      'IO',
      `--out ${out} already holds a training run; continue it with \`sprout train --resume ${out}\` or choose another --out`,
    )
  }
  if (readdirSync(out).length > 0)
    throw new SproutError('IO', `--out ${out} exists and is not empty; choose another directory`)
  return 'none'
}

const hasCheckpoint = (out: string) => existsSync(join(out, CHECKPOINT_DIR, 'sprout.json'))

/**
 * Puts a run folder back in order after a process died in it: an interrupted checkpoint swap is
 * completed or rolled back (output-dir.ts), and temporary files of dead processes are removed.
 */
function recoverRun(out: string, log: (line: string) => void): void {
  if (!existsSync(out) || !statSync(out).isDirectory()) return
  const checkpointLock = lockOutput(join(out, CHECKPOINT_DIR), log)
  try {
    recoverOutput(join(out, CHECKPOINT_DIR), log)
  } finally {
    checkpointLock.release()
  }
  const stale = readdirSync(out).filter((name) => {
    const m = /\.tmp-(\d+)-[a-z0-9]+$/.exec(name)
    return m !== null && !processAlive(Number(m[1]))
  })
  for (const name of stale) rmSync(join(out, name), { force: true })
  if (stale.length > 0) log(`${out}: removed ${stale.length} unfinished file(s) of a process that died`)
}

/**
 * `sprout train --config run.json --out DIR` and `sprout train --resume DIR`. The run folder is
 * locked for the whole run: a second writer gets one line naming this process.
 */
export async function runTrain(args: TrainArgs, io: CommandIo): Promise<void> {
  if (args.resume !== undefined) {
    // A resumed run keeps its config and seed (changing them would break exact continuation).
    if (args.config !== undefined)
      throw new SproutError('USAGE', '--resume continues a run with its saved config; drop --config')
    if (args.seed !== undefined)
      throw new SproutError('USAGE', "--resume keeps the run's seed so the data order continues; drop --seed")
    if (args.out !== undefined && resolve(args.out) !== resolve(args.resume))
      throw new SproutError('USAGE', '--resume writes into the run directory itself; drop --out')
  } else {
    if (args.config === undefined) throw new SproutError('USAGE', 'pass --config run.json (or --resume DIR)')
    if (args.out === undefined)
      throw new SproutError('USAGE', 'pass --out DIR for the checkpoints and metrics')
  }
  const dir = args.resume ?? args.out!
  checkOutputPath(dir, args.resume !== undefined ? '--resume' : '--out')
  // Nothing to lock (and no parent folders to create) for a run that does not exist.
  if (args.resume !== undefined && !existsSync(dir))
    throw new SproutError(
      'INPUT_INVALID',
      `${args.resume} is not a training run (it does not exist); start one with --config`,
    )
  const log = (line: string) => io.err(line)
  const lock = lockOutput(dir, log)
  try {
    withFsErrors(dir, () => recoverRun(resolve(dir), log))
    await trainLocked(args, io)
  } catch (e) {
    throw fsError(e) ?? e
  } finally {
    lock.release()
  }
}

async function trainLocked(args: TrainArgs, io: CommandIo): Promise<void> {
  let config: RunConfig
  let out: string
  let model: Model
  let resumeFrom: TrainerState | undefined
  let mask: GrowthMask | undefined
  let newParams: string[] | null = null
  let optimizerState: Record<string, tf.Tensor> | undefined
  let stage = 0
  let records: StageRecord[] = []
  if (args.resume !== undefined) {
    out = resolve(args.resume)
    const runFile = join(out, RUN_FILE)
    if (!existsSync(runFile))
      throw new SproutError(
        'INPUT_INVALID',
        `${args.resume} is not a training run (no ${RUN_FILE}); start one with --config`,
      )
    config = parseRunConfig((readJsonFile(runFile, 'run') as { config?: unknown })?.config, runFile)
    if (args.steps !== undefined) config = { ...config, steps: args.steps }
    if (args.checkpointEvery !== undefined) config = { ...config, checkpointEvery: args.checkpointEvery }
    if (!hasCheckpoint(out)) {
      // Died before its first checkpoint (a kill, an out-of-memory abort): nothing to continue
      // from, so the run starts again from step 0 with the config it recorded.
      io.err(
        `${args.resume} has no checkpoint yet (the run stopped before its first one): restarting it from step 0 with its recorded config`,
      )
      ;({ model, mask, newParams } = initialModel(config))
    } else {
      checkTrainingFits(config, readCheckpointInfo(join(out, CHECKPOINT_DIR)).spec)
      const ckpt = loadCheckpoint(join(out, CHECKPOINT_DIR))
      model = ckpt.model
      ;({ mask, newParams } = growthMeta(ckpt.meta))
      optimizerState = ckpt.state ?? undefined
      resumeFrom = (ckpt.meta as { trainer?: TrainerState }).trainer
      stage = (ckpt.meta as { stage?: number }).stage ?? 0
      records = (ckpt.meta as { stages?: StageRecord[] }).stages ?? []
      if (!resumeFrom) {
        disposeModel(model)
        if (optimizerState) tf.dispose(Object.values(optimizerState))
        throw new SproutError('CHECKPOINT_INVALID', `${out}/${CHECKPOINT_DIR} has no trainer state`)
      }
      io.err(`resuming ${out} at step ${resumeFrom.step}`)
    }
  } else {
    config = readRunConfig(args.config!)
    if (args.steps !== undefined) config.steps = args.steps
    if (args.checkpointEvery !== undefined) config.checkpointEvery = args.checkpointEvery
    if (args.seed !== undefined) config.seed = args.seed
    out = resolve(args.out!)
    if (existingRun(out) === 'restart')
      io.err(
        `${args.out} holds a run that stopped before its first checkpoint: starting it again with this config`,
      )
    ;({ model, mask, newParams } = initialModel(config))
  }
  let frozen: Set<string>
  try {
    frozen = resolveFrozen(config.freeze ?? [], Object.keys(model.params), newParams)
  } catch (e) {
    disposeModel(model)
    if (optimizerState) tf.dispose(Object.values(optimizerState))
    throw e
  }
  let data: Dataset | null = null
  let val: ReturnType<Dataset['valBatches']> = []
  let createdOut = false
  const stop = { requested: false }
  const onSigint = () => {
    stop.requested = true
    io.err('interrupt: finishing the current step and writing a checkpoint (Ctrl-C again to abort)')
    process.off('SIGINT', onSigint)
  }
  try {
    data = await openDataset(config.data, model.spec, {
      batchSize: config.batchSize,
      seqLen: config.seqLen,
      seed: config.seed,
      tokenizer: config.tokenizer,
    })
    // Stages are checked before anything is written: a bad stage leaves no run directory.
    const stages: PlannedStage[] = await planStages(
      config.stages ?? [],
      {
        spec: model.spec,
        appliedStages: stage,
        steps: config.steps,
        tokensPerStep: data.train.tokensPerBatch * config.accumulate,
        seqLen: data.train.seqLen,
        examplesPerStep: data.train.batchSize * config.accumulate,
        budgetFlops: config.budget.flops,
      },
      args.resolveMethod,
    )
    val = data.valBatches(config.evalBatches)
    const describe = data.describe
    const writeRun = (stageRecords: StageRecord[]) =>
      writeFileAtomic(
        join(out, RUN_FILE),
        `${JSON.stringify({ config, data: describe, ...(stages.length > 0 ? { stages: stageRecords } : {}) }, null, 2)}\n`,
      )
    if (!resumeFrom) {
      createdOut = !existsSync(out)
      mkdirSync(out, { recursive: true })
      writeRun([])
    }
    io.err(`training ${specSummary(model.spec)} on ${data.describe} for ${config.steps} steps -> ${out}`)
    if (frozen.size > 0)
      io.err(
        `  frozen: ${frozen.size} of ${Object.keys(model.params).length} parameters (${config.freeze!.join(', ')})`,
      )
    process.on('SIGINT', onSigint)
    const trainOptions: TrainOptions = {
      model,
      train: data.train,
      val,
      config: {
        steps: config.steps,
        optimizer: config.optimizer,
        schedule: config.schedule,
        clipNorm: config.clipNorm,
        accumulate: config.accumulate,
        evalEvery: config.evalEvery,
        evalBatches: config.evalBatches,
        checkpointEvery: config.checkpointEvery,
        budget: config.budget,
      },
      outDir: out,
      meta: {
        createdBy: 'sprout train',
        data: data.describe,
        // So `sprout eval` reads text the way the model was trained on it.
        tokenizer: config.tokenizer,
        seqLen: config.seqLen ?? model.spec.maxSeqLen,
        mask: mask ?? null,
        // Carried along so a resumed run (or a later one from this checkpoint) can freeze "source".
        newParams,
      },
      mask,
      frozen: [...frozen],
      optimizerState,
      resumeFrom,
      log: (l) => io.err(l),
      progress: args.progress,
      shouldStop: () => stop.requested,
    }
    let result: TrainResult
    let finalStage = 0
    if (stages.length > 0) {
      const r = await trainProgressive({
        ...trainOptions,
        stages,
        seed: config.seed,
        stage,
        records,
        onStage: writeRun,
      })
      result = r
      finalStage = r.stage
    } else result = await train(trainOptions)
    const s = result.state
    try {
      io.out(
        `trained to step ${s.step} (${result.stoppedBy === 'steps' ? 'done' : `stopped: ${result.stoppedBy}`}): ` +
          `train loss ${result.trainLoss.toFixed(4)}, val loss ${result.valLoss?.toFixed(4) ?? '-'}, ` +
          `${s.tokens.toLocaleString('en-US')} tokens, ${formatFlops(s.flops)}, ${s.seconds.toFixed(1)} s`,
      )
      if (stages.length > 0)
        io.out(
          `  stage ${finalStage} of ${stages.length}: ${specSummary(result.model.spec)} (growth steps ${stages.map((x) => `${x.step} ${x.op.name}`).join(', ')})`,
        )
      if (data.unigramEntropy !== undefined)
        io.out(`  unigram entropy of the training text: ${data.unigramEntropy.toFixed(4)} nats/token`)
      io.out(`  checkpoint: ${join(out, CHECKPOINT_DIR)}; metrics: ${join(out, 'metrics.jsonl')}`)
      if (result.stoppedBy === 'interrupted') io.out(`  resume with: sprout train --resume ${out}`)
      if (args.json)
        io.out(
          JSON.stringify({
            step: s.step,
            trainLoss: result.trainLoss,
            valLoss: result.valLoss,
            tokens: s.tokens,
            flops: s.flops,
            seconds: s.seconds,
            ...(stages.length > 0 ? { stage: finalStage, spec: result.model.spec } : {}),
          }),
        )
    } finally {
      disposeModel(result.model)
    }
  } catch (e) {
    // A new run that fails before its first checkpoint leaves nothing behind (it could be
    // neither resumed nor restarted into the same --out).
    if (createdOut && !existsSync(join(out, CHECKPOINT_DIR, 'sprout.json')))
      rmSync(out, { recursive: true, force: true })
    throw e
  } finally {
    process.off('SIGINT', onSigint)
    tf.dispose(val.flatMap((b) => Object.values(b)))
    disposeModel(model)
    if (optimizerState) tf.dispose(Object.values(optimizerState))
  }
}

export interface EvalArgs {
  checkpoint: string
  data: string
  json?: boolean
  /** Validation batches to average (default 16). */
  batches?: number
  batchSize?: number
}

/** `sprout eval --checkpoint DIR --data NAME|PATH`: validation loss and perplexity (accuracy for images). */
export async function runEval(args: EvalArgs, io: CommandIo): Promise<void> {
  const { model, state, meta } = loadCheckpoint(args.checkpoint)
  const trained = meta as { tokenizer?: TokenizerName; seqLen?: number }
  // Evaluation needs only the weights; optimizer moments saved by the trainer are dropped.
  if (state) tf.dispose(Object.values(state))
  let val: ReturnType<Dataset['valBatches']> = []
  try {
    const data = await openDataset(args.data, model.spec, {
      batchSize: args.batchSize ?? 8,
      seed: 0,
      tokenizer: trained.tokenizer,
      seqLen: trained.seqLen,
    })
    val = data.valBatches(args.batches ?? 16)
    const r = evaluate(model, val)
    // A NaN loss is not a result: say where it comes from (weights loaded with --allow-non-finite, or an overflow).
    if (!Number.isFinite(r.loss))
      throw new SproutError(
        'WEIGHTS_NON_FINITE',
        `${args.checkpoint}: the validation loss is ${r.loss} because ${explainNonFinite(model)}`,
      )
    if (r.accuracy !== null) {
      io.out(
        `${args.checkpoint} on ${data.describe}: val loss ${r.loss.toFixed(4)}, accuracy ${(100 * r.accuracy).toFixed(2)}%`,
      )
      if (args.json) io.out(JSON.stringify({ valLoss: r.loss, accuracy: r.accuracy }))
    } else {
      io.out(
        `${args.checkpoint} on ${data.describe}: val loss ${r.loss.toFixed(4)}, perplexity ${Math.exp(r.loss).toFixed(3)}`,
      )
      if (args.json) io.out(JSON.stringify({ valLoss: r.loss, perplexity: Math.exp(r.loss) }))
    }
  } finally {
    tf.dispose(val.flatMap((b) => Object.values(b)))
    disposeModel(model)
  }
}

/**
 * Real batches and the trainer's fit for `sprout grow --data`: what learned growth operators
 * (LiGO, Mango) need in their GrowthContext.
 */
export async function growthData(
  source: string,
  target: TransformerSpec,
  opts: { batchSize?: number; seqLen?: number; seed: number; progress?: GrowthContext['progress'] },
): Promise<{
  batches: NonNullable<GrowthContext['batches']>
  fit: NonNullable<GrowthContext['fit']>
  describe: string
}> {
  const data = await openDataset(source, target, {
    batchSize: opts.batchSize ?? 8,
    seqLen: opts.seqLen,
    seed: opts.seed,
  })
  return { batches: data.train, fit: createFit(data.train, opts.progress), describe: data.describe }
}
