import { type Batch, hashSeed, SeededRandom, SproutError } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { type BatchStream, EpochOrder } from './stream.js'

export interface TextSplit {
  train: Int32Array
  val: Int32Array
}

/**
 * Fixed split: the last `valFraction` of the tokens is validation, the rest training. A tail
 * slice (not a random one) keeps validation text contiguous and identical for every seed.
 */
export function splitTokens(tokens: Int32Array, seqLen: number, valFraction = 0.1): TextSplit {
  if (tokens.length < 2 * (seqLen + 1))
    throw new SproutError(
      'DATA_INVALID',
      `the corpus has ${tokens.length} tokens, fewer than one training and one validation sequence of ${seqLen + 1}; use a longer text or a shorter seqLen`,
    )
  const nVal = Math.max(seqLen + 1, Math.floor(tokens.length * valFraction))
  const cut = tokens.length - nVal
  if (cut < seqLen + 1)
    throw new SproutError(
      'DATA_INVALID',
      `after holding out ${nVal} validation tokens only ${cut} remain for training, fewer than one sequence of ${seqLen + 1}`,
    )
  return { train: tokens.subarray(0, cut), val: tokens.subarray(cut) }
}

/** Start offsets of non-overlapping windows of `span` tokens. */
function windowStarts(n: number, span: number, stride: number): number {
  return Math.floor((n - span) / stride) + 1
}

/** Causal-LM batches: inputs = window[0..T), targets = window[1..T], windows in seeded epoch order. */
export class CausalBatches implements BatchStream {
  private readonly order: EpochOrder
  readonly tokensPerBatch: number
  constructor(
    private readonly tokens: Int32Array,
    readonly batchSize: number,
    readonly seqLen: number,
    seed: number,
  ) {
    if (tokens.length < seqLen + 1)
      throw new SproutError(
        'DATA_INVALID',
        `${tokens.length} tokens are fewer than one sequence of ${seqLen + 1}`,
      )
    this.order = new EpochOrder(windowStarts(tokens.length, seqLen + 1, seqLen), seed)
    this.tokensPerBatch = batchSize * seqLen
  }

  next(): Batch {
    const { batchSize: B, seqLen: T } = this
    const inputs = new Int32Array(B * T)
    const targets = new Int32Array(B * T)
    for (let b = 0; b < B; b++) {
      const start = this.order.take().example * T
      inputs.set(this.tokens.subarray(start, start + T), b * T)
      targets.set(this.tokens.subarray(start + 1, start + T + 1), b * T)
    }
    return { inputs: tf.tensor2d(inputs, [B, T], 'int32'), targets: tf.tensor2d(targets, [B, T], 'int32') }
  }
  cursor() {
    return this.order.cursor()
  }
  seek(c: { epoch: number; index: number }) {
    this.order.seek(c)
  }
}

/** Validation batches: consecutive windows from the start of the split, the same for every run. */
export function causalValBatches(
  tokens: Int32Array,
  batchSize: number,
  seqLen: number,
  maxBatches: number,
): Batch[] {
  const windows = windowStarts(tokens.length, seqLen + 1, seqLen)
  const n = Math.max(1, Math.min(maxBatches, Math.floor(windows / batchSize)))
  const out: Batch[] = []
  for (let k = 0; k < n; k++) {
    const rows = Math.min(batchSize, windows - k * batchSize)
    const inputs = new Int32Array(rows * seqLen)
    const targets = new Int32Array(rows * seqLen)
    for (let b = 0; b < rows; b++) {
      const start = (k * batchSize + b) * seqLen
      inputs.set(tokens.subarray(start, start + seqLen), b * seqLen)
      targets.set(tokens.subarray(start + 1, start + seqLen + 1), b * seqLen)
    }
    out.push({
      inputs: tf.tensor2d(inputs, [rows, seqLen], 'int32'),
      targets: tf.tensor2d(targets, [rows, seqLen], 'int32'),
    })
  }
  return out
}

export interface MaskingOptions {
  /** Id written at masked positions ([MASK]); must lie outside the tokenizer's ids. */
  maskId: number
  /** Ids drawn for the random-replacement 10%: [0, randomVocab). */
  randomVocab: number
  /** Fraction of positions selected for prediction (BERT: 0.15). */
  maskRate?: number
}

/**
 * BERT masking of one sequence: each position is selected with probability maskRate (at least
 * one per sequence); a selected token becomes [MASK] 80% of the time, a random token 10%, and
 * stays 10%. Targets are the original ids, weights 1 exactly at the selected positions.
 */
export function maskSequence(
  ids: Int32Array,
  rng: SeededRandom,
  { maskId, randomVocab, maskRate = 0.15 }: MaskingOptions,
): { inputs: Int32Array; weights: Float32Array } {
  const inputs = Int32Array.from(ids)
  const weights = new Float32Array(ids.length)
  for (let i = 0; i < ids.length; i++) if (rng.uniform() < maskRate) weights[i] = 1
  if (!weights.some((w) => w === 1)) weights[rng.int(ids.length)] = 1
  for (let i = 0; i < ids.length; i++) {
    if (weights[i] === 0) continue
    const u = rng.uniform()
    if (u < 0.8) inputs[i] = maskId
    else if (u < 0.9) inputs[i] = rng.int(randomVocab)
  }
  return { inputs, weights }
}

/** Masked-LM batches over non-overlapping windows; the masking of an example depends only on (seed, epoch, position). */
export class MaskedBatches implements BatchStream {
  private readonly order: EpochOrder
  readonly tokensPerBatch: number
  constructor(
    private readonly tokens: Int32Array,
    readonly batchSize: number,
    readonly seqLen: number,
    private readonly seed: number,
    private readonly masking: MaskingOptions,
  ) {
    if (tokens.length < seqLen)
      throw new SproutError(
        'DATA_INVALID',
        `${tokens.length} tokens are fewer than one sequence of ${seqLen}`,
      )
    this.order = new EpochOrder(windowStarts(tokens.length, seqLen, seqLen), seed)
    this.tokensPerBatch = batchSize * seqLen
  }

  next(): Batch {
    const { batchSize: B, seqLen: T } = this
    const inputs = new Int32Array(B * T)
    const targets = new Int32Array(B * T)
    const weights = new Float32Array(B * T)
    for (let b = 0; b < B; b++) {
      const { example, epoch, index } = this.order.take()
      const ids = this.tokens.subarray(example * T, example * T + T)
      const m = maskSequence(
        ids,
        new SeededRandom(hashSeed(this.seed, `mask ${epoch}:${index}`)),
        this.masking,
      )
      inputs.set(m.inputs, b * T)
      targets.set(ids, b * T)
      weights.set(m.weights, b * T)
    }
    return {
      inputs: tf.tensor2d(inputs, [B, T], 'int32'),
      targets: tf.tensor2d(targets, [B, T], 'int32'),
      weights: tf.tensor2d(weights, [B, T], 'float32'),
    }
  }
  cursor() {
    return this.order.cursor()
  }
  seek(c: { epoch: number; index: number }) {
    this.order.seek(c)
  }
}

/** Fixed masked validation batches (masking seeded independently of the run seed). */
export function maskedValBatches(
  tokens: Int32Array,
  batchSize: number,
  seqLen: number,
  maxBatches: number,
  masking: MaskingOptions,
): Batch[] {
  const windows = windowStarts(tokens.length, seqLen, seqLen)
  const n = Math.max(1, Math.min(maxBatches, Math.floor(windows / batchSize)))
  const out: Batch[] = []
  for (let k = 0; k < n; k++) {
    const rows = Math.min(batchSize, windows - k * batchSize)
    const inputs = new Int32Array(rows * seqLen)
    const targets = new Int32Array(rows * seqLen)
    const weights = new Float32Array(rows * seqLen)
    for (let b = 0; b < rows; b++) {
      const w = k * batchSize + b
      const ids = tokens.subarray(w * seqLen, w * seqLen + seqLen)
      const m = maskSequence(ids, new SeededRandom(hashSeed(0, `val mask ${w}`)), masking)
      inputs.set(m.inputs, b * seqLen)
      targets.set(ids, b * seqLen)
      weights.set(m.weights, b * seqLen)
    }
    out.push({
      inputs: tf.tensor2d(inputs, [rows, seqLen], 'int32'),
      targets: tf.tensor2d(targets, [rows, seqLen], 'int32'),
      weights: tf.tensor2d(weights, [rows, seqLen], 'float32'),
    })
  }
  return out
}
