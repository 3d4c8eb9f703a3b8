import { type Batch, hashSeed, SeededRandom, SproutError } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { EpochBatches } from './stream.js'

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
export class CausalBatches extends EpochBatches {
  constructor(
    private readonly tokens: Int32Array,
    batchSize: number,
    seqLen: number,
    seed: number,
  ) {
    if (tokens.length < seqLen + 1)
      throw new SproutError(
        'DATA_INVALID',
        `${tokens.length} tokens are fewer than one sequence of ${seqLen + 1}`,
      )
    super(batchSize, seqLen, windowStarts(tokens.length, seqLen + 1, seqLen), seed)
  }

  next(): Batch {
    return causalBatch(
      this.tokens,
      Array.from({ length: this.batchSize }, () => this.order.take().example),
      this.seqLen,
    )
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
  return fixedGroups(windows, batchSize, maxBatches).map((ws) => causalBatch(tokens, ws, seqLen))
}

/** Consecutive windows [0, 1, ...] in groups of batchSize: at most maxBatches groups, at least one. */
function fixedGroups(windows: number, batchSize: number, maxBatches: number): number[][] {
  const n = Math.max(1, Math.min(maxBatches, Math.floor(windows / batchSize)))
  return Array.from({ length: n }, (_, k) =>
    Array.from({ length: Math.min(batchSize, windows - k * batchSize) }, (_, b) => k * batchSize + b),
  )
}

/** A causal-LM batch of the given windows: inputs = window[0..T), targets = window[1..T]. */
function causalBatch(tokens: Int32Array, windows: number[], T: number): Batch {
  const inputs = new Int32Array(windows.length * T)
  const targets = new Int32Array(windows.length * T)
  windows.forEach((w, b) => {
    inputs.set(tokens.subarray(w * T, w * T + T), b * T)
    targets.set(tokens.subarray(w * T + 1, w * T + T + 1), b * T)
  })
  return {
    inputs: tf.tensor2d(inputs, [windows.length, T], 'int32'),
    targets: tf.tensor2d(targets, [windows.length, T], 'int32'),
  }
}

/** A masked-LM batch of the given windows, each masked with its own generator. */
function maskedBatch(
  tokens: Int32Array,
  windows: number[],
  T: number,
  rng: (b: number) => SeededRandom,
  masking: MaskingOptions,
): Batch {
  const inputs = new Int32Array(windows.length * T)
  const targets = new Int32Array(windows.length * T)
  const weights = new Float32Array(windows.length * T)
  windows.forEach((w, b) => {
    const ids = tokens.subarray(w * T, w * T + T)
    const m = maskSequence(ids, rng(b), masking)
    inputs.set(m.inputs, b * T)
    targets.set(ids, b * T)
    weights.set(m.weights, b * T)
  })
  const shape: [number, number] = [windows.length, T]
  return {
    inputs: tf.tensor2d(inputs, shape, 'int32'),
    targets: tf.tensor2d(targets, shape, 'int32'),
    weights: tf.tensor2d(weights, shape, 'float32'),
  }
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
export class MaskedBatches extends EpochBatches {
  constructor(
    private readonly tokens: Int32Array,
    batchSize: number,
    seqLen: number,
    private readonly seed: number,
    private readonly masking: MaskingOptions,
  ) {
    if (tokens.length < seqLen)
      throw new SproutError(
        'DATA_INVALID',
        `${tokens.length} tokens are fewer than one sequence of ${seqLen}`,
      )
    super(batchSize, seqLen, windowStarts(tokens.length, seqLen, seqLen), seed)
  }

  next(): Batch {
    const draws = Array.from({ length: this.batchSize }, () => this.order.take())
    return maskedBatch(
      this.tokens,
      draws.map((d) => d.example),
      this.seqLen,
      (b) => new SeededRandom(hashSeed(this.seed, `mask ${draws[b].epoch}:${draws[b].index}`)),
      this.masking,
    )
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
  return fixedGroups(windows, batchSize, maxBatches).map((ws) =>
    maskedBatch(tokens, ws, seqLen, (b) => new SeededRandom(hashSeed(0, `val mask ${ws[b]}`)), masking),
  )
}
