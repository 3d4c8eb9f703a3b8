import { type Batch, SeededRandom, type TransformerSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/** The shape GrowthContext.batches has: an endless source of batches for the target model. */
export interface BatchSource {
  next(): Batch
  batchSize: number
  seqLen: number
}

/**
 * Seeded synthetic batches with structure a model can learn, so that fitting a learned
 * operator has something to reduce:
 * - decoder: sequences following t' = (3t + 1) mod V from a random start (next-token prediction);
 * - encoder: the same sequences with ~25% of positions replaced by token 0, predicted back;
 * - vit: one fixed random pattern per class plus noise, labelled with the class.
 * Each `next()` returns fresh tensors that the caller owns (and must dispose).
 */
export function syntheticBatches(spec: TransformerSpec, seed: number, batchSize = 4): BatchSource {
  const rng = new SeededRandom(seed)
  if (spec.family === 'vit') {
    const { size, channels, classes } = spec.image!
    const pixels = size * size * channels
    const patterns = Array.from({ length: classes }, () => rng.normals(pixels))
    return {
      batchSize,
      seqLen: spec.maxSeqLen,
      next() {
        const images = new Float32Array(batchSize * pixels)
        const labels = new Int32Array(batchSize)
        for (let b = 0; b < batchSize; b++) {
          const c = rng.int(classes)
          labels[b] = c
          for (let i = 0; i < pixels; i++) images[b * pixels + i] = patterns[c][i] + 0.5 * rng.normal()
        }
        return {
          inputs: tf.tensor4d(images, [batchSize, size, size, channels]),
          targets: tf.tensor1d(labels, 'int32'),
        }
      },
    }
  }
  const V = spec.vocabSize
  const T = Math.min(spec.maxSeqLen, 8)
  const sequence = (length: number): number[] => {
    const out = [1 + rng.int(V - 1)]
    while (out.length < length) out.push((3 * out[out.length - 1] + 1) % V)
    return out
  }
  if (spec.family === 'decoder')
    return {
      batchSize,
      seqLen: T,
      next() {
        const inputs = new Int32Array(batchSize * T)
        const targets = new Int32Array(batchSize * T)
        for (let b = 0; b < batchSize; b++) {
          const s = sequence(T + 1)
          for (let t = 0; t < T; t++) {
            inputs[b * T + t] = s[t]
            targets[b * T + t] = s[t + 1]
          }
        }
        return {
          inputs: tf.tensor2d(inputs, [batchSize, T], 'int32'),
          targets: tf.tensor2d(targets, [batchSize, T], 'int32'),
        }
      },
    }
  return {
    batchSize,
    seqLen: T,
    next() {
      const inputs = new Int32Array(batchSize * T)
      const targets = new Int32Array(batchSize * T)
      const weights = new Float32Array(batchSize * T)
      for (let b = 0; b < batchSize; b++) {
        const s = sequence(T)
        // At least one masked position per row, so every row contributes to the loss.
        const forced = rng.int(T)
        for (let t = 0; t < T; t++) {
          const masked = t === forced || rng.uniform() < 0.25
          inputs[b * T + t] = masked ? 0 : s[t]
          targets[b * T + t] = s[t]
          weights[b * T + t] = masked ? 1 : 0
        }
      }
      return {
        inputs: tf.tensor2d(inputs, [batchSize, T], 'int32'),
        targets: tf.tensor2d(targets, [batchSize, T], 'int32'),
        weights: tf.tensor2d(weights, [batchSize, T]),
      }
    },
  }
}

/**
 * Synthetic text with structure a model can learn at any sequence length: every sequence follows
 * one fixed random first-order Markov chain (each token has 2 likely successors, 10 % uniform
 * noise), seeded. Used to pretrain tiny sources and fit learned operators in tests.
 */
export function markovBatches(
  spec: TransformerSpec,
  batchSize: number,
  seqLen: number,
  seed: number,
): BatchSource {
  const V = spec.vocabSize
  const table = new SeededRandom(12345)
  const succ = Array.from({ length: V }, () => [table.int(V), table.int(V)])
  const rng = new SeededRandom(seed)
  return {
    batchSize,
    seqLen,
    next() {
      const ids = new Int32Array(batchSize * (seqLen + 1))
      for (let b = 0; b < batchSize; b++) {
        let t = rng.int(V)
        for (let i = 0; i <= seqLen; i++) {
          ids[b * (seqLen + 1) + i] = t
          t = rng.uniform() < 0.9 ? succ[t][rng.int(2)] : rng.int(V)
        }
      }
      return tf.tidy(() => {
        const all = tf.tensor2d(ids, [batchSize, seqLen + 1], 'int32')
        return {
          inputs: all.slice([0, 0], [batchSize, seqLen]),
          targets: all.slice([0, 1], [batchSize, seqLen]),
        }
      })
    },
  }
}
