import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  type CommandIo,
  disposeModel,
  formatFlops,
  type GrowthContext,
  type GrowthMask,
  initModel,
  loadCheckpoint,
  type Model,
  parseSpec,
  readSpecFile,
  SproutError,
  specSummary,
  type TransformerSpec,
  writeFileAtomic,
} from '@sprout/core'
import { type Dataset, openDataset, type TokenizerName } from '@sprout/data'
import * as tf from '@tensorflow/tfjs'
import { parseRunConfig, type RunConfig, readRunConfig } from './config.js'
import { createFit } from './fit.js'
import { CHECKPOINT_DIR, evaluate, type TrainerState, train } from './loop.js'

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
}

const RUN_FILE = 'run.json'

/** The model to train, and the growth mask its checkpoint carries (MSG-style stacking). */
function initialModel(config: RunConfig): { model: Model; mask?: GrowthMask } {
  if (config.from === undefined)
    return {
      model: initModel(
        typeof config.spec === 'string' ? readSpecFile(config.spec) : parseSpec(config.spec!),
        config.seed,
      ),
    }
  const ckpt = loadCheckpoint(config.from)
  if (ckpt.state) tf.dispose(Object.values(ckpt.state))
  const mask = (ckpt.meta as { mask?: GrowthMask | null }).mask ?? undefined
  return { model: ckpt.model, mask }
}

function refuseExistingRun(out: string): void {
  if (!existsSync(out)) return
  if (existsSync(join(out, RUN_FILE)))
    throw new SproutError(
      'IO',
      `--out ${out} already holds a training run; continue it with \`sprout train --resume ${out}\` or choose another --out`,
    )
  if (readdirSync(out).length > 0)
    throw new SproutError('IO', `--out ${out} exists and is not empty; choose another directory`)
}

/** `sprout train --config run.json --out DIR` and `sprout train --resume DIR`. */
export async function runTrain(args: TrainArgs, io: CommandIo): Promise<void> {
  let config: RunConfig
  let out: string
  let model: Model
  let resumeFrom: TrainerState | undefined
  let mask: GrowthMask | undefined
  let optimizerState: Record<string, tf.Tensor> | undefined
  if (args.resume !== undefined) {
    // A resumed run keeps its config and seed (changing them would break exact continuation).
    if (args.config !== undefined)
      throw new SproutError('USAGE', '--resume continues a run with its saved config; drop --config')
    if (args.seed !== undefined)
      throw new SproutError('USAGE', "--resume keeps the run's seed so the data order continues; drop --seed")
    if (args.out !== undefined && resolve(args.out) !== resolve(args.resume))
      throw new SproutError('USAGE', '--resume writes into the run directory itself; drop --out')
    out = resolve(args.resume)
    const runFile = join(out, RUN_FILE)
    if (!existsSync(runFile))
      throw new SproutError(
        'INPUT_INVALID',
        `${args.resume} is not a training run (no ${RUN_FILE}); start one with --config`,
      )
    config = parseRunConfig(JSON.parse(readFileSync(runFile, 'utf8')).config, runFile)
    if (!existsSync(join(out, CHECKPOINT_DIR, 'sprout.json')))
      throw new SproutError(
        'CHECKPOINT_NOT_FOUND',
        `${args.resume} has no checkpoint yet (the run stopped before its first one); start it again with --config`,
      )
    const ckpt = loadCheckpoint(join(out, CHECKPOINT_DIR))
    model = ckpt.model
    mask = (ckpt.meta as { mask?: GrowthMask | null }).mask ?? undefined
    optimizerState = ckpt.state ?? undefined
    resumeFrom = (ckpt.meta as { trainer?: TrainerState }).trainer
    if (!resumeFrom) {
      disposeModel(model)
      if (optimizerState) tf.dispose(Object.values(optimizerState))
      throw new SproutError('CHECKPOINT_INVALID', `${out}/${CHECKPOINT_DIR} has no trainer state`)
    }
    if (args.steps !== undefined) config = { ...config, steps: args.steps }
    if (args.checkpointEvery !== undefined) config = { ...config, checkpointEvery: args.checkpointEvery }
    io.err(`resuming ${out} at step ${resumeFrom.step}`)
  } else {
    if (args.config === undefined) throw new SproutError('USAGE', 'pass --config run.json (or --resume DIR)')
    config = readRunConfig(args.config)
    if (args.steps !== undefined) config.steps = args.steps
    if (args.checkpointEvery !== undefined) config.checkpointEvery = args.checkpointEvery
    if (args.seed !== undefined) config.seed = args.seed
    if (args.out === undefined)
      throw new SproutError('USAGE', 'pass --out DIR for the checkpoints and metrics')
    out = resolve(args.out)
    refuseExistingRun(out)
    ;({ model, mask } = initialModel(config))
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
    val = data.valBatches(config.evalBatches)
    if (!resumeFrom) {
      createdOut = !existsSync(out)
      mkdirSync(out, { recursive: true })
      writeFileAtomic(join(out, RUN_FILE), `${JSON.stringify({ config, data: data.describe }, null, 2)}\n`)
    }
    io.err(`training ${specSummary(model.spec)} on ${data.describe} for ${config.steps} steps -> ${out}`)
    process.on('SIGINT', onSigint)
    const result = await train({
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
      },
      mask,
      optimizerState,
      resumeFrom,
      log: (l) => io.err(l),
      progress: args.progress,
      shouldStop: () => stop.requested,
    })
    const s = result.state
    try {
      io.out(
        `trained to step ${s.step} (${result.stoppedBy === 'steps' ? 'done' : `stopped: ${result.stoppedBy}`}): ` +
          `train loss ${result.trainLoss.toFixed(4)}, val loss ${result.valLoss?.toFixed(4) ?? '-'}, ` +
          `${s.tokens.toLocaleString('en-US')} tokens, ${formatFlops(s.flops)}, ${s.seconds.toFixed(1)} s`,
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
