import { type Batch, patchCount, SproutError, type TransformerSpec } from '@sprout/core'
import {
  ImageBatches,
  type ImageSet,
  imageValBatches,
  loadFashionMnist,
  loadMnist,
  splitImages,
} from './images.js'
import type { BatchStream } from './stream.js'
import { loadText, TEXT_CORPORA } from './text.js'
import {
  CausalBatches,
  causalValBatches,
  MaskedBatches,
  type MaskingOptions,
  maskedValBatches,
  splitTokens,
} from './textBatches.js'
import { makeTokenizer, type Tokenizer, type TokenizerName } from './tokenizers.js'

export const IMAGE_DATA = ['mnist', 'fashion-mnist'] as const

export interface DatasetOptions {
  batchSize: number
  /** Tokens per text example (default: the spec's maxSeqLen); ignored for images. */
  seqLen?: number
  seed: number
  /** Text tokenizer (default byte: vocabulary 256). */
  tokenizer?: TokenizerName
  /** Fraction of text tokens held out for validation (default 0.1). */
  valFraction?: number
}

export interface Dataset {
  /** e.g. "moby-dick (byte tokens, 1,203,456 train / 133,717 val)". */
  describe: string
  kind: 'causal' | 'masked' | 'image'
  train: BatchStream
  /** Fixed validation batches (the same for every seed); the caller disposes them. */
  valBatches(maxBatches: number): Batch[]
  tokenizer?: Tokenizer
  /** Unigram entropy of the training tokens in nats (text only): the loss of the best context-free model. */
  unigramEntropy?: number
}

/** Entropy in nats of the token frequency distribution. */
export function unigramEntropy(tokens: Int32Array): number {
  const counts = new Map<number, number>()
  for (const t of tokens) counts.set(t, (counts.get(t) ?? 0) + 1)
  let h = 0
  for (const c of counts.values()) {
    const p = c / tokens.length
    h -= p * Math.log(p)
  }
  return h
}

function imageSet(source: string): ImageSet {
  if (source === 'mnist') return loadMnist()
  if (source === 'fashion-mnist') return loadFashionMnist()
  throw new SproutError(
    'USAGE',
    `family "vit" trains on images: use --data mnist or fashion-mnist (got "${source}")`,
  )
}

function openImages(source: string, spec: TransformerSpec, opts: DatasetOptions): Dataset {
  const img = spec.image!
  const set = imageSet(source)
  if (img.size !== set.height || img.size !== set.width || img.channels !== set.channels)
    throw new SproutError(
      'DATA_INVALID',
      `${set.name} images are ${set.height}×${set.width}×${set.channels} but the spec expects ${img.size}×${img.size}×${img.channels}; set spec.image.size ${set.height} and channels ${set.channels}`,
    )
  if (img.classes < set.classes)
    throw new SproutError(
      'DATA_INVALID',
      `${set.name} has ${set.classes} classes but the spec's head has ${img.classes}`,
    )
  const { train, val } = splitImages(set)
  const seqLen = patchCount(img) + 1
  return {
    describe: `${set.name} (${train.length} train / ${val.length} val images)`,
    kind: 'image',
    train: new ImageBatches(set, train, opts.batchSize, seqLen, opts.seed),
    valBatches: (n) => imageValBatches(set, val, opts.batchSize, n),
  }
}

/**
 * Opens training data for a model: text corpora (`moby-dick`, `sotu`, a file or folder)
 * become causal-LM batches for decoders and masked-LM batches for encoders; `mnist` and
 * `fashion-mnist` become image batches for ViTs.
 */
export async function openDataset(
  source: string,
  spec: TransformerSpec,
  opts: DatasetOptions,
): Promise<Dataset> {
  const isImage = (IMAGE_DATA as readonly string[]).includes(source)
  if (spec.family === 'vit') return openImages(source, spec, opts)
  if (isImage)
    throw new SproutError(
      'USAGE',
      `${source} is image data but the model is a "${spec.family}"; use a text corpus (moby-dick, sotu, or a file)`,
    )
  const seqLen = opts.seqLen ?? spec.maxSeqLen
  if (seqLen > spec.maxSeqLen)
    throw new SproutError('INPUT_INVALID', `seqLen ${seqLen} exceeds the model's maxSeqLen ${spec.maxSeqLen}`)
  const text = loadText(source)
  const tokenizer = await makeTokenizer(opts.tokenizer ?? 'byte', text.text)
  const masked = spec.family === 'encoder'
  const needed = tokenizer.vocabSize + (masked ? 1 : 0)
  if (spec.vocabSize < needed)
    throw new SproutError(
      'DATA_INVALID',
      `the ${tokenizer.name} tokenizer needs a vocabulary of ${needed}${masked ? ' (its tokens plus [MASK])' : ''} but the spec has vocabSize ${spec.vocabSize}`,
    )
  const tokens = tokenizer.encode(text.text)
  const split = splitTokens(tokens, seqLen, opts.valFraction)
  const describe = `${text.name} (${tokenizer.name} tokens, ${split.train.length.toLocaleString('en-US')} train / ${split.val.length.toLocaleString('en-US')} val)`
  const entropy = unigramEntropy(split.train)
  if (masked) {
    const masking: MaskingOptions = { maskId: tokenizer.vocabSize, randomVocab: tokenizer.vocabSize }
    return {
      describe,
      kind: 'masked',
      tokenizer,
      unigramEntropy: entropy,
      train: new MaskedBatches(split.train, opts.batchSize, seqLen, opts.seed, masking),
      valBatches: (n) => maskedValBatches(split.val, opts.batchSize, seqLen, n, masking),
    }
  }
  return {
    describe,
    kind: 'causal',
    tokenizer,
    unigramEntropy: entropy,
    train: new CausalBatches(split.train, opts.batchSize, seqLen, opts.seed),
    valBatches: (n) => causalValBatches(split.val, opts.batchSize, seqLen, n),
  }
}

/** Data names accepted besides paths: the bundled text corpora and the image sets. */
export const DATA_NAMES: readonly string[] = [...Object.keys(TEXT_CORPORA), ...IMAGE_DATA]
