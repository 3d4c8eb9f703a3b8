import {
  computeLoss,
  countParams,
  describeBackend,
  initModel,
  parseSpec,
  SproutError,
  selectBackend,
} from '@sprout/core'
import { AdamW } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import type { Io } from './compare.js'

export interface ThroughputArgs {
  layers: number
  dModel: number
  heads: number
  seqLen: number
  batch: number
  vocab: number
  steps: number
  backend?: string
  json?: boolean
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
  const spec = parseSpec({
    family: 'decoder',
    vocabSize: args.vocab,
    maxSeqLen: args.seqLen,
    dModel: args.dModel,
    nLayers: args.layers,
    nHeads: args.heads,
    dFF: 4 * args.dModel,
    activation: 'gelu_tanh',
    positional: 'learned',
    normPlacement: 'pre',
    bias: true,
    tieEmbeddings: true,
  })
  const init = initModel(spec, 1)
  const vars: Record<string, tf.Variable> = {}
  for (const [n, t] of Object.entries(init.params)) vars[n] = tf.variable(t)
  tf.dispose(Object.values(init.params))
  const model = { spec, params: vars }
  const opt = new AdamW(vars, { weightDecay: 0.01 })
  const names = new Map(Object.entries(vars).map(([n, v]) => [v.name, n]))
  const inputs = tf.randomUniform([args.batch, args.seqLen], 0, args.vocab, 'int32', 1)
  const targets = tf.randomUniform([args.batch, args.seqLen], 0, args.vocab, 'int32', 2)
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
    opt.dispose()
    tf.dispose([inputs, targets, ...Object.values(vars)])
  }
}
