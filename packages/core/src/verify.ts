import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'
import { explainNonFinite } from './finite.js'
import { forward } from './forward.js'
import type { Model } from './params.js'
import { SeededRandom } from './random.js'
import type { TransformerSpec } from './spec.js'

export interface VerifyOptions {
  seed?: number
  batchSize?: number
  /** Text sequence length (default: min(source maxSeqLen, 32)). */
  seqLen?: number
}

/** Random inputs valid for both specs: token ids from the smaller vocabulary, or normal images. */
export function randomInputs(
  spec: TransformerSpec,
  batchSize: number,
  seqLen: number,
  seed: number,
): tf.Tensor {
  const rng = new SeededRandom(seed)
  if (spec.family === 'vit') {
    const { size, channels } = spec.image!
    return tf.tensor4d(rng.normals(batchSize * size * size * channels), [batchSize, size, size, channels])
  }
  const ids = new Int32Array(batchSize * seqLen)
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(spec.vocabSize)
  return tf.tensor2d(ids, [batchSize, seqLen], 'int32')
}

/**
 * Max |logits_target − logits_source| on the same random inputs: the check behind every
 * function-preservation claim. Compares the source's logit columns (a larger target
 * vocabulary's extra columns are ignored). MoE layers run without capacity limits.
 */
export function maxAbsLogitDiff(source: Model, target: Model, options: VerifyOptions = {}): number {
  if (source.spec.family !== target.spec.family)
    throw new SproutError('INPUT_INVALID', 'cannot compare logits of models of different families')
  const seqLen = options.seqLen ?? Math.min(source.spec.maxSeqLen, 32)
  const inputs = randomInputs(source.spec, options.batchSize ?? 2, seqLen, options.seed ?? 1234)
  try {
    return tf.tidy(() => {
      const opts = { training: false, moeCapacityFactor: Number.POSITIVE_INFINITY }
      const a = forward(source, inputs, opts)
      // NaN/Inf in the source is not a growth bug: say what it is (weights loaded with --allow-non-finite).
      if (!tf.all(tf.isFinite(a)).dataSync()[0])
        throw new SproutError(
          'WEIGHTS_NON_FINITE',
          `cannot compare logits: the source model's logits are not finite because ${explainNonFinite(source)}`,
        )
      let b = forward(target, inputs, opts)
      const C = a.shape[a.shape.length - 1]!
      if (b.shape[b.shape.length - 1] !== C)
        b = b.slice(
          b.shape.map(() => 0),
          [...b.shape.slice(0, -1), C],
        )
      return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]
    })
  } finally {
    inputs.dispose()
  }
}
