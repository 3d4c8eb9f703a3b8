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

  /** maxBytes: most memory kept for reuse; arrays shorter than minLength are never pooled. */
  constructor(
    readonly maxBytes: number,
    readonly minLength = 4096,
  ) {}

  /** An array of n floats with arbitrary contents: every caller overwrites all of it. */
  take(n: number): Float32Array {
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
  }

  /** Bytes currently held for reuse. */
  get heldBytes(): number {
    return this.bytes
  }
}

const poolMegabytes = Number(process.env.SPROUT_NATIVE_POOL_MB ?? 512)

/** The native backend's output arrays (SPROUT_NATIVE_POOL_MB caps it, default 512; 0 turns reuse off). */
export const outputs = new BufferPool(Number.isFinite(poolMegabytes) ? poolMegabytes * 2 ** 20 : 0)
