import {
  computeLoss,
  countParams,
  describeBackend,
  initModel,
  parseSpec,
  SproutError,
  selectBackend,
  type TransformerSpec,
} from '@sprout/core'
import { AdamW } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import type { Io } from './compare.js'

/** The model and batch `sprout bench throughput` trains. */
export interface ThroughputShape {
  layers: number
  dModel: number
  heads: number
  seqLen: number
  batch: number
  vocab: number
}

export interface ThroughputArgs extends ThroughputShape {
  steps: number
  backend?: string
  json?: boolean
}

/** The GPT-2-style decoder: learned positions, pre-LN with biases, tanh-GELU 4× MLP, tied head. */
export function throughputSpec(a: ThroughputShape): TransformerSpec {
  return parseSpec({
    family: 'decoder',
    vocabSize: a.vocab,
    maxSeqLen: a.seqLen,
    dModel: a.dModel,
    nLayers: a.layers,
    nHeads: a.heads,
    dFF: 4 * a.dModel,
    activation: 'gelu_tanh',
    positional: 'learned',
    normPlacement: 'pre',
    bias: true,
    tieEmbeddings: true,
  })
}

/**
 * That model (seed 1) with the trainer's AdamW (weight decay 0.01) and one fixed batch of random
 * tokens: step() runs a training step (loss read back, lr 1e-4); dispose() frees everything.
 */
export function throughputTrainer(a: ThroughputShape): {
  spec: TransformerSpec
  step: () => void
  dispose: () => void
} {
  const spec = throughputSpec(a)
  const init = initModel(spec, 1)
  const vars: Record<string, tf.Variable> = {}
  for (const [n, t] of Object.entries(init.params)) vars[n] = tf.variable(t)
  tf.dispose(Object.values(init.params))
  const model = { spec, params: vars }
  const opt = new AdamW(vars, { weightDecay: 0.01 })
  const names = new Map(Object.entries(vars).map(([n, v]) => [v.name, n]))
  const inputs = tf.randomUniform([a.batch, a.seqLen], 0, a.vocab, 'int32', 1)
  const targets = tf.randomUniform([a.batch, a.seqLen], 0, a.vocab, 'int32', 2)
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => computeLoss(model, { inputs, targets }, { training: true }).loss,
      Object.values(vars),
    )
    value.dataSync()
    const named = Object.fromEntries(Object.entries(grads).map(([vn, g]) => [names.get(vn)!, g]))
    opt.apply(named, 1e-4)
    tf.dispose([value, ...Object.values(grads)])
  }
  const dispose = () => {
    opt.dispose()
    tf.dispose([inputs, targets, ...Object.values(vars)])
  }
  return { spec, step, dispose }
}

/**
 * `sprout bench throughput`: trains a GPT-2-style decoder (learned positions, pre-LN with biases,
 * tanh-GELU 4× MLP, tied head, AdamW) on random tokens and reports seconds per step and
 * tokens per second, excluding one warm-up step.
 */
export async function runThroughput(
  args: ThroughputArgs,
  io: Io,
): Promise<{ backend: string; params: number; stepSeconds: number; tokensPerSecond: number }> {
  for (const k of ['layers', 'dModel', 'heads', 'seqLen', 'batch', 'vocab', 'steps'] as const)
    if (!Number.isInteger(args[k]) || args[k] < 1)
      throw new SproutError(
        'USAGE',
        `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a positive integer`,
      )
  const choice = await selectBackend(args.backend)
  io.err(`sprout: ${describeBackend(choice)}`)
  const { spec, step, dispose } = throughputTrainer(args)
  try {
    step()
    const start = performance.now()
    for (let i = 0; i < args.steps; i++) step()
    const stepSeconds = (performance.now() - start) / 1000 / args.steps
    const result = {
      backend: choice.name,
      params: countParams(spec),
      stepSeconds,
      tokensPerSecond: (args.batch * args.seqLen) / stepSeconds,
    }
    io.out(
      args.json
        ? JSON.stringify(result)
        : `${choice.name}: ${result.params.toLocaleString('en-US')} parameters, ${(stepSeconds * 1000).toFixed(1)} ms/step, ${Math.round(result.tokensPerSecond)} tokens/s`,
    )
    return result
  } finally {
    dispose()
  }
}
