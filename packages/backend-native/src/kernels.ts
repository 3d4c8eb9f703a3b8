import * as tf from '@tensorflow/tfjs'
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu'
import type { NativeAddon, Word32Array } from './addon.js'
import { outputs } from './pool.js'

type Info = tf.TensorInfo

/** The tfjs input names the native kernels read. */
export type KernelInputs = Record<'x' | 'logits' | 'indices' | 'segmentIds' | 'value', Info>

/** A kernel body that returns null when it cannot handle its inputs (the cpu kernel runs instead). */
export type NativeKernel = (
  addon: NativeAddon,
  backend: MathBackendCPU,
  inputs: KernelInputs,
  attrs: tf.NamedAttrMap,
) => Info | Info[] | null

/** The float32 storage of t, or null (cpu kernels sometimes leave a float32 tensor in another array type). */
export function floats(backend: MathBackendCPU, t: Info): Float32Array | null {
  const v = backend.data.get(t.dataId).values
  return t.dtype === 'float32' && v instanceof Float32Array ? v : null
}

/** The 32-bit storage of a float32 or int32 tensor, or null. */
function words(backend: MathBackendCPU, t: Info): Word32Array | null {
  const v = backend.data.get(t.dataId).values
  return (t.dtype === 'float32' && v instanceof Float32Array) ||
    (t.dtype === 'int32' && v instanceof Int32Array)
    ? v
    : null
}

function ints(backend: MathBackendCPU, t: Info): Int32Array | null {
  const v = backend.data.get(t.dataId).values
  return t.dtype === 'int32' && v instanceof Int32Array ? v : null
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

function alloc(dtype: tf.DataType, n: number): Word32Array {
  return dtype === 'int32' ? new Int32Array(n) : outputs.take(n)
}

export const UNARY_OPS = {
  Exp: 0,
  Log: 1,
  Tanh: 2,
  Sqrt: 3,
  Rsqrt: 4,
  Square: 5,
  Neg: 6,
  Sigmoid: 7,
  Relu: 8,
  Erf: 9,
  Abs: 10,
  Reciprocal: 11,
} as const

function unary(op: number): NativeKernel {
  return (addon, backend, { x }) => {
    const xv = floats(backend, x)
    if (!xv) return null
    const out = outputs.take(size(x.shape))
    addon.unary(op, xv, out)
    return backend.makeTensorInfo(x.shape, 'float32', out)
  }
}

export const REDUCE_OPS = { Sum: 0, Max: 1, Min: 2, Mean: 3 } as const

function reduce(op: number, axisAttr: 'axis' | 'reductionIndices'): NativeKernel {
  return (addon, backend, { x }, attrs) => {
    const xv = floats(backend, x)
    if (!xv) return null
    const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape)
    const flags = Int32Array.from(x.shape, (_, d) => (axes.includes(d) ? 1 : 0))
    const kept = x.shape.filter((_, d) => !flags[d])
    const out = outputs.take(size(kept))
    addon.reduce(op, xv, out, Int32Array.from(x.shape), flags)
    const shape = attrs.keepDims ? x.shape.map((d, i) => (flags[i] ? 1 : d)) : kept
    return backend.makeTensorInfo(shape, 'float32', out)
  }
}

const softmax: NativeKernel = (addon, backend, { logits }, { dim }) => {
  const rank = logits.shape.length
  const xv = floats(backend, logits)
  if (!xv || rank === 0 || ((dim as number) !== -1 && dim !== rank - 1)) return null
  const cols = logits.shape[rank - 1]
  const rows = cols === 0 ? 0 : size(logits.shape) / cols
  const out = outputs.take(rows * cols)
  addon.softmax(xv, out, rows, cols)
  return backend.makeTensorInfo(logits.shape, 'float32', out)
}

const transpose: NativeKernel = (addon, backend, { x }, { perm }) => {
  const p = perm as number[]
  const xv = words(backend, x)
  if (!xv || x.shape.length === 0) return null
  const out = alloc(x.dtype, size(x.shape))
  addon.transpose(xv, out, Int32Array.from(x.shape), Int32Array.from(p))
  return backend.makeTensorInfo(
    p.map((d) => x.shape[d]),
    x.dtype,
    out,
  )
}

const gather: NativeKernel = (addon, backend, { x, indices }, { axis, batchDims }) => {
  const xv = words(backend, x)
  const ids = ints(backend, indices)
  if (!xv || !ids || (batchDims as number) !== 0) return null
  const [ax] = tf.util.parseAxisParam(axis as number, x.shape)
  const outer = size(x.shape.slice(0, ax))
  const inner = size(x.shape.slice(ax + 1))
  const shape = [...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)]
  const out = alloc(x.dtype, size(shape))
  // An out-of-range index: let the cpu kernel raise its own error.
  if (addon.gather(xv, ids, out, outer, x.shape[ax], inner) !== -1) return null
  return backend.makeTensorInfo(shape, x.dtype, out)
}

const segmentSum: NativeKernel = (addon, backend, { x, segmentIds }, { numSegments }) => {
  const xv = floats(backend, x)
  const ids = ints(backend, segmentIds)
  if (!xv || !ids || segmentIds.shape.length !== 1) return null
  const rest = x.shape.slice(1)
  const inner = size(rest)
  const segs = numSegments as number
  const out = new Float32Array(segs * inner) // zeroed: the kernel accumulates into it
  addon.segmentSum(xv, ids, out, segs, inner)
  return backend.makeTensorInfo([segs, ...rest], 'float32', out)
}

/**
 * Values [begin, begin + count) along `axis` of a row-major array: one native gather pass that
 * copies runs of the inner size. (tfjs cpu's strided slice reads element by element through
 * TensorBuffer.get, about 100 ns per value: a 3 M-value Unpack along the last axis took 0.3 s.)
 */
function sliceAxis(
  addon: NativeAddon,
  values: Word32Array,
  shape: number[],
  axis: number,
  begin: number,
  count: number,
  out: Word32Array,
): Word32Array {
  const ids = Int32Array.from({ length: count }, (_, i) => begin + i)
  addon.gather(values, ids, out, size(shape.slice(0, axis)), shape[axis], size(shape.slice(axis + 1)))
  return out
}

/** A strided slice as one gather per axis that is cut; null where cpu's result is better (a view). */
function stridedSlice(
  addon: NativeAddon,
  backend: MathBackendCPU,
  x: Info,
  begin: number[],
  extent: number[],
  outShape: number[] = extent,
): Info | null {
  const xv = words(backend, x)
  // Out-of-bounds requests go to the cpu kernel, which raises tfjs's own error for them.
  const inside = x.shape.every((d, a) => begin[a] >= 0 && extent[a] >= 0 && begin[a] + extent[a] <= d)
  if (!xv || !inside || extent.some((n) => n === 0) || tf.slice_util.isSliceContinous(x.shape, begin, extent))
    return null
  const cut = x.shape.map((_, a) => a).filter((a) => extent[a] < x.shape[a])
  let values = xv
  const shape = [...x.shape]
  cut.forEach((a, i) => {
    const n = size(shape) / shape[a]
    const count = extent[a]
    // Intermediate arrays are plain allocations; only the result comes from the output pool.
    const out =
      i === cut.length - 1
        ? alloc(x.dtype, n * count)
        : x.dtype === 'int32'
          ? new Int32Array(n * count)
          : new Float32Array(n * count)
    values = sliceAxis(addon, values, shape, a, begin[a], count, out)
    shape[a] = count
  })
  return backend.makeTensorInfo(outShape, x.dtype, values)
}

const slice: NativeKernel = (addon, backend, { x }, attrs) => {
  const [begin, extent] = tf.slice_util.parseSliceParams(
    x as unknown as tf.Tensor,
    attrs.begin as number[],
    attrs.size as number[],
  )
  return stridedSlice(addon, backend, x, begin, extent)
}

/** Unpack and SplitV along an inner axis: strided slices (along axis 0 they are views in cpu). */
function splitAlong(
  addon: NativeAddon,
  backend: MathBackendCPU,
  x: Info,
  axis: number,
  sizes: number[],
  dropAxis = false,
): Info[] | null {
  if (axis === 0 || !words(backend, x) || sizes.some((n) => n === 0)) return null
  const parts: Info[] = []
  let at = 0
  for (const n of sizes) {
    const begin = x.shape.map((_, a) => (a === axis ? at : 0))
    const extent = x.shape.map((d, a) => (a === axis ? n : d))
    const shape = dropAxis ? x.shape.filter((_, a) => a !== axis) : extent
    const part = stridedSlice(addon, backend, x, begin, extent, shape)
    if (!part) {
      for (const p of parts) backend.disposeIntermediateTensorInfo(p)
      return null
    }
    parts.push(part)
    at += n
  }
  return parts
}

const unpack: NativeKernel = (addon, backend, { value }, { axis }) => {
  const [ax] = tf.util.parseAxisParam(axis as number, value.shape)
  return splitAlong(addon, backend, value, ax, new Array(value.shape[ax]).fill(1), true)
}

const splitV: NativeKernel = (addon, backend, { x }, { numOrSizeSplits, axis }) => {
  const [ax] = tf.util.parseAxisParam(axis as number, x.shape)
  const sizes = tf.backend_util.prepareSplitSize(
    x as unknown as tf.Tensor,
    numOrSizeSplits as number | number[],
    ax,
  )
  return splitAlong(addon, backend, x, ax, sizes)
}

/**
 * PadV2: the output filled with the constant, then x copied in row by row (runs of its last
 * axis). tfjs cpu maps every element through index arithmetic on arrays, ~2 µs per value; the
 * gradient of every Slice is a Pad.
 */
const pad: NativeKernel = (_addon, backend, { x }, { paddings, constantValue }) => {
  const xv = words(backend, x)
  const p = paddings as [number, number][]
  if (!xv || x.shape.length === 0 || size(x.shape) === 0) return null
  const outShape = x.shape.map((d, a) => p[a][0] + d + p[a][1])
  const out = alloc(x.dtype, size(outShape))
  out.fill(constantValue as number)
  const rank = x.shape.length
  const run = x.shape[rank - 1]
  const rows = size(x.shape) / run
  // Strides of the output, and the output offset of x's first element.
  const strides = outShape.map((_, a) => size(outShape.slice(a + 1)))
  const base = p.reduce((o, [before], a) => o + before * strides[a], 0)
  const index = new Array<number>(rank - 1).fill(0)
  for (let r = 0; r < rows; r++) {
    let o = base
    for (let a = 0; a < rank - 1; a++) o += index[a] * strides[a]
    out.set(xv.subarray(r * run, (r + 1) * run), o)
    for (let a = rank - 2; a >= 0; a--) {
      if (++index[a] < x.shape[a]) break
      index[a] = 0
    }
  }
  return backend.makeTensorInfo(outShape, x.dtype, out)
}

/** Kernels beyond the matrix products and broadcast arithmetic, by tfjs kernel name. */
export const NATIVE_TABLE: Record<string, NativeKernel> = {
  ...Object.fromEntries(Object.entries(UNARY_OPS).map(([name, op]) => [name, unary(op)])),
  Sum: reduce(REDUCE_OPS.Sum, 'axis'),
  Mean: reduce(REDUCE_OPS.Mean, 'axis'),
  Min: reduce(REDUCE_OPS.Min, 'axis'),
  Max: reduce(REDUCE_OPS.Max, 'reductionIndices'),
  Softmax: softmax,
  Transpose: transpose,
  GatherV2: gather,
  UnsortedSegmentSum: segmentSum,
  Slice: slice,
  Unpack: unpack,
  SplitV: splitV,
  PadV2: pad,
}
