import { type Batch, hashSeed, SeededRandom, SproutError } from '@sprout/core'

/** Where a stream is: the epoch and the position within that epoch's shuffled order. */
export interface BatchCursor {
  epoch: number
  index: number
}

/** An endless, seeded, resumable stream of training batches. */
export interface BatchStream {
  readonly batchSize: number
  /** Tokens per example (text) or patches + class token (images). */
  readonly seqLen: number
  /** Tokens (text) or examples (images) consumed per batch, for throughput accounting. */
  readonly tokensPerBatch: number
  next(): Batch
  cursor(): BatchCursor
  seek(cursor: BatchCursor): void
}

/**
 * Visits `count` examples epoch by epoch, each epoch in its own seeded permutation, so the
 * order depends only on (seed, epoch) and a cursor is enough to resume exactly.
 */
export class EpochOrder {
  private epoch = 0
  private index = 0
  private order: Int32Array | null = null
  constructor(
    readonly count: number,
    private readonly seed: number,
  ) {}

  private permutation(): Int32Array {
    if (!this.order) {
      const order = Int32Array.from({ length: this.count }, (_, i) => i)
      const rng = new SeededRandom(hashSeed(this.seed, `epoch ${this.epoch}`))
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1)
        const t = order[i]
        order[i] = order[j]
        order[j] = t
      }
      this.order = order
    }
    return this.order
  }

  /** The next example and the (epoch, position) it was drawn at, rolling over epochs. */
  take(): { example: number; epoch: number; index: number } {
    if (this.index >= this.count) {
      this.epoch++
      this.index = 0
      this.order = null
    }
    const at = { epoch: this.epoch, index: this.index }
    return { example: this.permutation()[this.index++], ...at }
  }

  cursor(): BatchCursor {
    return { epoch: this.epoch, index: this.index }
  }

  seek(c: BatchCursor): void {
    if (
      !Number.isInteger(c.epoch) ||
      !Number.isInteger(c.index) ||
      c.epoch < 0 ||
      c.index < 0 ||
      c.index > this.count
    )
      throw new SproutError(
        'CHECKPOINT_INVALID',
        `data cursor ${JSON.stringify(c)} does not fit a dataset of ${this.count} examples; resume with the data the run was started on`,
      )
    this.epoch = c.epoch
    this.index = c.index
    this.order = null
  }
}

/** A stream whose examples are visited in EpochOrder: the cursor and seek every stream shares. */
export abstract class EpochBatches implements BatchStream {
  protected readonly order: EpochOrder
  readonly tokensPerBatch: number
  constructor(
    readonly batchSize: number,
    readonly seqLen: number,
    examples: number,
    seed: number,
  ) {
    this.order = new EpochOrder(examples, seed)
    this.tokensPerBatch = batchSize * seqLen
  }
  abstract next(): Batch
  cursor(): BatchCursor {
    return this.order.cursor()
  }
  seek(cursor: BatchCursor): void {
    this.order.seek(cursor)
  }
}
