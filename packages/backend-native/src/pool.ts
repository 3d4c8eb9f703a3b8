import { totalmem } from 'node:os'

/**
 * Recycles the float32 output arrays of native kernels. A training step allocates hundreds of
 * megabytes of short-lived arrays; left to the garbage collector, their external memory triggers
 * several major collections per step (measured: ~9 per step of a 4-layer d256 model, ~20% of
 * the step) and every new array is zero-filled first. An array is only reused when it is
 * certain that nothing else can see it: the pool made it, its tensor's data was removed from the
 * backend, and it was never read out (dataSync, data, bufferSync) nor shared with another
 * tensor (cpu kernels such as Slice may return views of their input).
 */
export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>()
  private readonly owned = new WeakSet<Float32Array>()
  private readonly pooled = new WeakSet<Float32Array>()
  private readonly exposed = new WeakSet<ArrayBufferLike>()
  private bytes = 0
  private lastTake = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  /**
   * maxBytes: most memory kept for reuse; arrays shorter than minLength are never pooled; after
   * idleMs without a take, everything held is let go (the memory of a finished run goes back to
   * the garbage collector instead of staying pinned for the life of the process).
   */
  constructor(
    readonly maxBytes: number,
    readonly minLength = 4096,
    readonly idleMs = 5000,
  ) {}

  /** An array of n floats with arbitrary contents: every caller overwrites all of it. */
  take(n: number): Float32Array {
    this.lastTake = performance.now()
    if (n < this.minLength || this.maxBytes <= 0) return new Float32Array(n)
    const reused = this.free.get(n)?.pop()
    if (reused) {
      this.pooled.delete(reused)
      this.bytes -= reused.byteLength
      return reused
    }
    const fresh = new Float32Array(n)
    this.owned.add(fresh)
    return fresh
  }

  /** Marks values (and every view of their buffer) as seen outside the backend: never reused. */
  expose(values: unknown): void {
    if (ArrayBuffer.isView(values)) this.exposed.add(values.buffer)
  }

  /** Offers the values of removed tensor data back for reuse. */
  give(values: unknown): void {
    if (
      !(values instanceof Float32Array) ||
      !this.owned.has(values) ||
      this.pooled.has(values) ||
      this.exposed.has(values.buffer) ||
      this.bytes + values.byteLength > this.maxBytes
    )
      return
    const stack = this.free.get(values.length)
    if (stack) stack.push(values)
    else this.free.set(values.length, [values])
    this.pooled.add(values)
    this.bytes += values.byteLength
    this.releaseWhenIdle()
  }

  /** Lets go of every array held for reuse. */
  release(): void {
    this.free.clear()
    this.bytes = 0
  }

  private releaseWhenIdle(): void {
    if (this.timer) return
    const check = () => {
      const idle = performance.now() - this.lastTake
      if (idle >= this.idleMs) {
        this.timer = undefined
        this.release()
      } else {
        this.timer = setTimeout(check, this.idleMs - idle)
        this.timer.unref?.() // never keeps the process alive
      }
    }
    this.timer = setTimeout(check, this.idleMs)
    this.timer.unref?.()
  }

  /** Bytes currently held for reuse. */
  get heldBytes(): number {
    return this.bytes
  }
}

/**
 * The default cap: a quarter of the machine's memory, at most 4 GiB. It has to hold one training
 * step's short-lived arrays, or the rest are allocated fresh every step (zero-filled, and
 * page-faulted in on first touch): L6 D512 T256 B8 frees ~1.3 GB per step, and capping the pool at
 * 512 MB made its step ~25 % slower than at 1 GB, at the same peak RSS (the collector holds the
 * garbage arrays anyway).
 */
export function defaultPoolBytes(totalBytes: number): number {
  return Math.min(4 * 2 ** 30, Math.floor(totalBytes / 4))
}

const poolMegabytes = Number(process.env.SPROUT_NATIVE_POOL_MB)

/** The native backend's output arrays (SPROUT_NATIVE_POOL_MB caps it, default defaultPoolBytes; 0 turns reuse off). */
export const outputs = new BufferPool(
  process.env.SPROUT_NATIVE_POOL_MB === undefined
    ? defaultPoolBytes(totalmem())
    : Number.isFinite(poolMegabytes)
      ? poolMegabytes * 2 ** 20
      : 0,
)
