import {
  capabilities,
  cloneModel,
  defineOperator,
  GrowthError,
  loss,
  type Params,
  paramTable,
  type TransformerSpec,
  z,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/** Zero-pads every tensor to the target's shape (new layers are all zeros). */
export function zeroPad(params: Params, target: TransformerSpec): Params {
  return tf.tidy(() => {
    const out: Params = {}
    for (const p of paramTable(target)) {
      const src = params[p.name]
      out[p.name] = src
        ? tf.pad(
            src,
            p.shape.map((d, i) => [0, d - src.shape[i]!] as [number, number]),
          )
        : tf.zeros(p.shape)
    }
    return out
  })
}

function checkPad(source: TransformerSpec, target: TransformerSpec): void {
  for (const k of [
    'family',
    'vocabSize',
    'maxSeqLen',
    'dModel',
    'headDim',
    'norm',
    'normPlacement',
    'activation',
    'bias',
  ] as const)
    if (source[k] !== target[k]) throw new GrowthError(`zero-pad: target ${k} must equal the source's`)
  for (const k of ['nLayers', 'nHeads', 'dFF'] as const)
    if (target[k] < source[k]) throw new GrowthError(`zero-pad: target ${k} is smaller than the source's`)
  if (target.moe || source.moe) throw new GrowthError('zero-pad: mixture-of-experts is not supported')
}

function checkFfnOnly(source: TransformerSpec, target: TransformerSpec): void {
  checkPad(source, target)
  if (target.nLayers !== source.nLayers || target.nHeads !== source.nHeads)
    throw new GrowthError('finetune-pad: only the FFN width (dFF) can grow')
}

const report = (method: string, steps = 0) => ({
  method,
  growthFlops: 0,
  steps,
  seconds: 0,
  functionPreserving: true,
  maxAbsLogitDiff: null,
  details: {},
})

/** A correct fixed operator: zero-padded heads, FFN units and (pre-norm) layers preserve the function. */
export const zeroPadOperator = defineOperator({
  name: 'zero-pad',
  description: 'Grows heads, FFN width and depth by zero-padding (function preserving)',
  options: z.strictObject({ scale: z.number().positive().default(1) }),
  capabilities: capabilities('heads', 'ffn', 'depth', 'functionPreserving'),
  check: checkPad,
  async grow(source, target) {
    checkPad(source.spec, target)
    return {
      model: { spec: structuredClone(target), params: zeroPad(source.params, target) },
      report: report('zero-pad'),
    }
  },
})

/**
 * A learned operator: the whole zero-padded target model is its trainable parameters,
 * fitted through ctx.fit on the target's loss.
 */
export const finetunePadOperator = defineOperator({
  name: 'finetune-pad',
  description: 'Zero-pads, then fits all target parameters on batches (a learned toy operator)',
  options: z.strictObject({
    steps: z.number().int().min(0).default(20),
    learningRate: z.number().min(0).default(0.01),
  }),
  capabilities: capabilities('ffn', 'learned'),
  check: checkFfnOnly,
  async grow(source, target, ctx, options) {
    checkFfnOnly(source.spec, target)
    const padded = zeroPad(source.params, target)
    const vars: Record<string, tf.Variable> = {}
    for (const [n, t] of Object.entries(padded)) vars[n] = tf.variable(t, true)
    tf.dispose(Object.values(padded))
    const fit = await ctx.fit!({
      trainables: vars,
      loss: (batch) => loss({ spec: target, params: vars }, batch),
      steps: options.steps,
      learningRate: options.learningRate,
      flopsPerStep: 0,
      label: 'finetune-pad',
    })
    const model = cloneModel({ spec: target, params: vars })
    tf.dispose(Object.values(vars))
    return {
      model,
      report: { ...report('finetune-pad', fit.steps), functionPreserving: false },
    }
  },
})
