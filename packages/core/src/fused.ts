import * as tf from '@tensorflow/tfjs'

/**
 * Fused kernels a backend may register (the `native` backend does). Each replaces a chain of
 * small ops and their gradients; when the active backend lacks one, core runs the composite tfjs
 * ops instead, which are the reference the fused kernels are tested against.
 *
 * - gelu {x} → y (tanh approximation); geluGrad {x, dy} → dx
 * - layerNorm {x [N, D], scale [D], shift? [D]}, attrs {eps, rms} → [y, mean [N], rstd [N]]
 *   (rms: RMSNorm, mean 0); layerNormGrad {dy, x, scale, mean, rstd}, attrs {rms, shift} → [dx, dscale, dshift?]
 * - attention {q [B, T, H·hd], k, v [B, T, KV·hd]}, attrs {heads, kvHeads, scale, causal}
 *   → [ctx [B, T, H·hd], probs [B, H, T, T]]; attentionGrad {dy, q, k, v, probs}, attrs
 *   {heads, kvHeads, scale, causal} → [dq, dk, dv] (causal: probs is zero above the diagonal, so
 *   a backend may skip those products)
 * - crossEntropy {logits [N, C], targets int32 [N], weights? [N]} → [loss scalar, lse [N]]
 *   (mean, or Σwᵢ·lossᵢ / max(Σw, 1e-9)); crossEntropyGrad {dy scalar, logits, targets, lse, weights?} → dlogits
 * - adamw {param, grad, m, v}, attrs {lr, beta1, beta2, eps, c1, c2, decay} → [param, m, v]
 *   (c1, c2 the bias corrections 1 − βᵗ; decay the decoupled factor 1 − lr·wd)
 */
export const FUSED_KERNELS = {
  gelu: 'SproutGeluTanh',
  geluGrad: 'SproutGeluTanhGrad',
  layerNorm: 'SproutLayerNorm',
  layerNormGrad: 'SproutLayerNormGrad',
  attention: 'SproutAttention',
  attentionGrad: 'SproutAttentionGrad',
  crossEntropy: 'SproutCrossEntropy',
  crossEntropyGrad: 'SproutCrossEntropyGrad',
  adamw: 'SproutAdamW',
} as const

let enabled = typeof process === 'undefined' || process.env.SPROUT_FUSED !== '0'

/** Turns fused kernels on or off (off: always the composite ops; SPROUT_FUSED=0 does the same). */
export function setFusedKernels(on: boolean): void {
  enabled = on
}

/** True when fused kernels are on and the active backend registers every kernel named. */
export function hasFusedKernels(...names: string[]): boolean {
  if (!enabled) return false
  const backend = tf.getBackend()
  return names.every((n) => tf.getKernel(n, backend) !== undefined)
}

type Attrs = Record<string, number | boolean>

function run(name: string, inputs: Record<string, tf.Tensor>, attrs: Attrs = {}): tf.Tensor[] {
  const out = tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap)
  return Array.isArray(out) ? out : [out as tf.Tensor]
}

/** customGrad with the save function split off the tensor arguments. */
function withGradient(
  f: (
    inputs: tf.Tensor[],
    save: tf.GradSaveFunc,
  ) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] },
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const g = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc
    const { value, gradFunc } = f(args as tf.Tensor[], save)
    return { value, gradFunc: (dy, saved) => gradFunc(dy as tf.Tensor, saved as tf.Tensor[]) }
  })
  return (...inputs) => g(...inputs) as tf.Tensor
}

/** Tanh-approximated GELU in one fused kernel each way. */
export function fusedGelu(x: tf.Tensor): tf.Tensor {
  return withGradient(([xi], save) => {
    save([xi])
    return {
      value: run(FUSED_KERNELS.gelu, { x: xi })[0],
      gradFunc: (dy, [sx]) => run(FUSED_KERNELS.geluGrad, { x: sx, dy }),
    }
  })(x)
}

/** LayerNorm (or RMSNorm when rms) over the last axis with scale and optional shift, fused. */
export function fusedNorm(
  x: tf.Tensor,
  scale: tf.Tensor,
  shift: tf.Tensor | undefined,
  eps: number,
  rms: boolean,
): tf.Tensor {
  const D = x.shape[x.shape.length - 1]!
  const op = withGradient(([xi, s, b], save) => {
    const [y, mean, rstd] = run(
      FUSED_KERNELS.layerNorm,
      b ? { x: xi, scale: s, shift: b } : { x: xi, scale: s },
      { eps, rms },
    )
    save([xi, s, mean, rstd])
    return {
      value: y,
      gradFunc: (dy, [sx, ss, sm, sr]) =>
        run(FUSED_KERNELS.layerNormGrad, { dy, x: sx, scale: ss, mean: sm, rstd: sr }, { rms, shift: !!b }),
    }
  })
  const flat = x.reshape([-1, D])
  return (shift ? op(flat, scale, shift) : op(flat, scale)).reshape(x.shape)
}

/**
 * Multi-head softmax attention without splitting heads: q [B, T, H·hd] and k, v [B, T, KV·hd]
 * (heads side by side in the last axis; query head h reads key/value head h / (H/KV), so KV < H
 * is grouped-query attention). Returns the context [B, T, H·hd] before the output projection.
 */
export function fusedAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  heads: number,
  kvHeads: number,
  causal: boolean,
): tf.Tensor {
  const scale = 1 / Math.sqrt(q.shape[2]! / heads)
  return withGradient(([qi, ki, vi], save) => {
    const [ctx, probs] = run(
      FUSED_KERNELS.attention,
      { q: qi, k: ki, v: vi },
      { heads, kvHeads, scale, causal },
    )
    save([qi, ki, vi, probs])
    return {
      value: ctx,
      gradFunc: (dy, [sq, sk, sv, sp]) =>
        run(
          FUSED_KERNELS.attentionGrad,
          { dy, q: sq, k: sk, v: sv, probs: sp },
          { heads, kvHeads, scale, causal },
        ),
    }
  })(q, k, v)
}

/** Mean (or weighted mean) softmax cross-entropy of logits [N, C] against int32 targets [N], fused. */
export function fusedCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  weights?: tf.Tensor1D,
): tf.Scalar {
  const extra: Record<string, tf.Tensor> = weights ? { weights } : {}
  return withGradient(([l], save) => {
    const [loss, lse] = run(FUSED_KERNELS.crossEntropy, { logits: l, targets, ...extra })
    // Targets and weights are saved too: the caller's tidy may dispose them before the backward pass.
    save(weights ? [l, lse, targets, weights] : [l, lse, targets])
    return {
      value: loss,
      gradFunc: (dy, [sl, slse, st, sw]) =>
        run(FUSED_KERNELS.crossEntropyGrad, {
          dy,
          logits: sl,
          targets: st,
          lse: slse,
          ...(sw ? { weights: sw } : {}),
        }),
    }
  })(logits) as tf.Scalar
}
