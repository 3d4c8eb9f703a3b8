import { FUSED_KERNELS } from '@sprout/core'
import type * as tf from '@tensorflow/tfjs'
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu'
import type { NativeAddon } from './addon.js'
import { outputs } from './pool.js'

type Info = tf.TensorInfo
type Kernel = (
  addon: NativeAddon,
  backend: MathBackendCPU,
  inputs: Record<string, Info>,
  attrs: tf.NamedAttrMap,
) => Info | Info[]

const NONE = new Float32Array(0) // an absent optional input

/** The tensor's values as float32 (cpu kernels sometimes leave float32 data in another array type). */
function f32(backend: MathBackendCPU, t: Info): Float32Array {
  const v = backend.data.get(t.dataId).values
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>)
}

function i32(backend: MathBackendCPU, t: Info): Int32Array {
  const v = backend.data.get(t.dataId).values
  return v instanceof Int32Array ? v : Int32Array.from(v as ArrayLike<number>)
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

function make(backend: MathBackendCPU, shape: number[], values: Float32Array): Info {
  return backend.makeTensorInfo(shape, 'float32', values)
}

function require2d(name: string, t: Info): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${name} expects a rank-2 input, got shape [${t.shape}]`)
  return [t.shape[0], t.shape[1]]
}

const gelu: Kernel = (addon, backend, { x }) => {
  const out = outputs.take(count(x.shape))
  addon.gelu(f32(backend, x), out, out.length)
  return make(backend, x.shape, out)
}

const geluGrad: Kernel = (addon, backend, { x, dy }) => {
  const out = outputs.take(count(x.shape))
  addon.geluGrad(f32(backend, x), f32(backend, dy), out, out.length)
  return make(backend, x.shape, out)
}

const layerNorm: Kernel = (addon, backend, { x, scale, shift }, { eps, rms }) => {
  const [rows, cols] = require2d(FUSED_KERNELS.layerNorm, x)
  const y = outputs.take(rows * cols)
  const mean = outputs.take(rows)
  const rstd = outputs.take(rows)
  addon.layerNorm(
    f32(backend, x),
    f32(backend, scale),
    shift ? f32(backend, shift) : NONE,
    y,
    mean,
    rstd,
    rows,
    cols,
    eps as number,
    rms ? 1 : 0,
  )
  return [make(backend, x.shape, y), make(backend, [rows], mean), make(backend, [rows], rstd)]
}

const layerNormGrad: Kernel = (addon, backend, { dy, x, scale, mean, rstd }, { rms, shift }) => {
  const [rows, cols] = require2d(FUSED_KERNELS.layerNormGrad, x)
  const dx = outputs.take(rows * cols)
  const dscale = outputs.take(cols)
  const dshift = shift ? outputs.take(cols) : NONE
  addon.layerNormGrad(
    f32(backend, dy),
    f32(backend, x),
    f32(backend, scale),
    f32(backend, mean),
    f32(backend, rstd),
    dx,
    dscale,
    dshift,
    rows,
    cols,
    rms ? 1 : 0,
  )
  const grads = [make(backend, x.shape, dx), make(backend, [cols], dscale)]
  return shift ? [...grads, make(backend, [cols], dshift)] : grads
}

function attentionDims(name: string, q: Info, k: Info, heads: number, kvHeads: number) {
  const [B, T, D] = q.shape
  const hd = D / heads
  if (
    q.shape.length !== 3 ||
    !Number.isInteger(hd) ||
    heads % kvHeads !== 0 ||
    k.shape.join() !== [B, T, kvHeads * hd].join()
  )
    throw new Error(
      `${name} expects q [B, T, heads·headDim] and k, v [B, T, kvHeads·headDim], got [${q.shape}] and [${k.shape}] with ${heads}/${kvHeads} heads`,
    )
  return { B, T, H: heads, KV: kvHeads, hd }
}

const attention: Kernel = (addon, backend, { q, k, v }, { heads, kvHeads, scale, causal }) => {
  const { B, T, H, KV, hd } = attentionDims(FUSED_KERNELS.attention, q, k, heads as number, kvHeads as number)
  const ctx = outputs.take(count(q.shape))
  const probs = outputs.take(B * H * T * T)
  addon.attention(
    f32(backend, q),
    f32(backend, k),
    f32(backend, v),
    ctx,
    probs,
    B,
    T,
    H,
    KV,
    hd,
    scale as number,
    causal ? 1 : 0,
  )
  return [make(backend, q.shape, ctx), make(backend, [B, H, T, T], probs)]
}

const attentionGrad: Kernel = (addon, backend, { dy, q, k, v, probs }, { heads, kvHeads, scale, causal }) => {
  const { B, T, H, KV, hd } = attentionDims(
    FUSED_KERNELS.attentionGrad,
    q,
    k,
    heads as number,
    kvHeads as number,
  )
  const dq = outputs.take(count(q.shape))
  const [dk, dv] = [0, 1].map(() => outputs.take(count(k.shape)))
  addon.attentionGrad(
    f32(backend, dy),
    f32(backend, q),
    f32(backend, k),
    f32(backend, v),
    f32(backend, probs),
    dq,
    dk,
    dv,
    B,
    T,
    H,
    KV,
    hd,
    scale as number,
    causal ? 1 : 0,
  )
  return [make(backend, q.shape, dq), make(backend, k.shape, dk), make(backend, k.shape, dv)]
}

const crossEntropy: Kernel = (addon, backend, { logits, targets, weights }) => {
  const [rows, cols] = require2d(FUSED_KERNELS.crossEntropy, logits)
  const lse = outputs.take(rows)
  const loss = addon.crossEntropy(
    f32(backend, logits),
    i32(backend, targets),
    weights ? f32(backend, weights) : NONE,
    lse,
    rows,
    cols,
  )
  return [make(backend, [], Float32Array.of(loss)), make(backend, [rows], lse)]
}

const crossEntropyGrad: Kernel = (addon, backend, { dy, logits, targets, lse, weights }) => {
  const [rows, cols] = require2d(FUSED_KERNELS.crossEntropyGrad, logits)
  const out = outputs.take(rows * cols)
  addon.crossEntropyGrad(
    f32(backend, logits),
    i32(backend, targets),
    weights ? f32(backend, weights) : NONE,
    f32(backend, lse),
    out,
    rows,
    cols,
    f32(backend, dy)[0],
  )
  return make(backend, logits.shape, out)
}

const adamw: Kernel = (addon, backend, { param, grad, m, v }, attrs) => {
  const { lr, beta1, beta2, eps, c1, c2, decay } = attrs as Record<string, number>
  const n = count(param.shape)
  const [po, mo, vo] = [0, 1, 2].map(() => outputs.take(n))
  addon.adamw(
    f32(backend, param),
    f32(backend, grad),
    f32(backend, m),
    f32(backend, v),
    po,
    mo,
    vo,
    n,
    lr,
    beta1,
    1 - beta1,
    beta2,
    1 - beta2,
    eps,
    c1,
    c2,
    decay,
  )
  return [po, mo, vo].map((t) => make(backend, param.shape, t))
}

/** The fused kernels of @sprout/core's FUSED_KERNELS contract, by kernel name. */
export const FUSED_TABLE: Record<string, Kernel> = {
  [FUSED_KERNELS.gelu]: gelu,
  [FUSED_KERNELS.geluGrad]: geluGrad,
  [FUSED_KERNELS.layerNorm]: layerNorm,
  [FUSED_KERNELS.layerNormGrad]: layerNormGrad,
  [FUSED_KERNELS.attention]: attention,
  [FUSED_KERNELS.attentionGrad]: attentionGrad,
  [FUSED_KERNELS.crossEntropy]: crossEntropy,
  [FUSED_KERNELS.crossEntropyGrad]: crossEntropyGrad,
  [FUSED_KERNELS.adamw]: adamw,
}
