import { type Model, parseSpec, type TransformerSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

export function spec(
  family: 'decoder' | 'encoder' | 'vit',
  extra: Record<string, unknown> = {},
): TransformerSpec {
  const img = family === 'vit' ? { image: { size: 8, patch: 4, channels: 3, classes: 5 } } : {}
  const text = family === 'vit' ? {} : { vocabSize: 23, maxSeqLen: 16 }
  return parseSpec({ family, ...img, ...text, dModel: 12, nLayers: 4, nHeads: 3, dFF: 20, ...extra })
}

/** A source with weights of order one and non-trivial norms and biases (the testkit's). */
export { orderOneModel as source } from '@sprout/testkit'

export const dispose = (m: Model) => tf.dispose(Object.values(m.params))
