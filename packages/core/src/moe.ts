import * as tf from '@tensorflow/tfjs'
import type { Params } from './params.js'
import { activate, gatherRows } from './primitives.js'
import type { TransformerSpec } from './spec.js'

export interface MoEOutput {
  output: tf.Tensor
  /** E · Σ_e f_e · P_e, where f_e is expert e's share of the N·k routing choices and P_e its mean router probability; 1 when balanced. */
  loadBalance: tf.Scalar
  /** mean over tokens of logsumexp(router logits)². */
  zLoss: tf.Scalar
}

/** Expert buffer size: ceil(k · N / E · factor), at most N; Infinity means no token is ever dropped. */
export function expertCapacity(tokens: number, experts: number, topK: number, factor: number): number {
  if (!Number.isFinite(factor)) return tokens
  return Math.min(tokens, Math.ceil(((topK * tokens) / experts) * factor))
}

/** Routing of N tokens to E experts; every tensor is laid out choice-major ([k, N]). */
export interface Routing {
  /** Expert of each token's j-th choice, [k, N] int32 (j = 0 is the most probable). */
  experts: tf.Tensor2D
  /** One-hot of `experts`, [k, N, E] float32 (no gradient). */
  choiceMask: tf.Tensor3D
  /** 1 where the choice got a buffer place, 0 where it was dropped, [k, N]. */
  kept: tf.Tensor2D
  /** Row of the [E·capacity + 1] expert buffer each choice reads from: expert·capacity + position, or E·capacity (an always-zero row) when dropped; [k, N] int32. */
  slot: tf.Tensor2D
  /** Renormalised top-k gate weights times `kept`, [k, N]; differentiable in the router probabilities. */
  gates: tf.Tensor2D
}

/**
 * Token-choice top-k routing with tensor ops. Each token takes its k most probable experts
 * (ties: lower expert index first) with gates p_j / Σ_j' p_j'. Buffer places are given in
 * priority order "choice rank, then token order": all first choices in token order fill the
 * buffers before any second choice, so an overfull expert drops a token's lower-ranked choices
 * first. A dropped choice keeps the others' renormalised gates (the residual carries the rest).
 * Positions come from a cumulative sum over the choice-major one-hot mask.
 */
export function routeTopK(probs: tf.Tensor2D, k: number, capacity: number): Routing {
  const [N, E] = probs.shape
  // The decisions run inside a customGrad so the tape never sees topk/comparisons (which
  // have no gradients); the router learns through the gate values and the auxiliary losses.
  const decide = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const p = args[0] as tf.Tensor2D
    const experts = tf.topk(p, k).indices.transpose()
    const choiceMask = tf.oneHot(experts, E, 1, 0, 'float32')
    const flat = choiceMask.reshape([k * N, E])
    // 1-based place of each choice in its expert's queue (exact in float32 below 2^24).
    const position = tf.sum(tf.mul(tf.cumsum(flat, 0), flat), 1).reshape([k, N])
    const keep = tf.lessEqual(position, capacity)
    const slot = tf.where(
      keep,
      tf.add(tf.mul(experts.toFloat(), capacity), tf.sub(position, 1)),
      E * capacity,
    )
    // customGrad returns one tensor: [k, N, E + 3] = one-hot | expert | kept | slot.
    const value = tf.concat(
      [choiceMask, ...[experts.toFloat(), keep.toFloat(), slot].map((t) => t.expandDims(2))],
      2,
    )
    return { value, gradFunc: () => [tf.zeros([N, E])] }
  })
  const packed = decide(probs)
  const column = (c: number) => packed.slice([0, 0, c], [k, N, 1]).reshape([k, N])
  const choiceMask = packed.slice([0, 0, 0], [k, N, E]) as tf.Tensor3D
  const experts = column(E).toInt() as tf.Tensor2D
  const kept = column(E + 1) as tf.Tensor2D
  const slot = column(E + 2).toInt() as tf.Tensor2D
  const picked = tf.sum(tf.mul(probs.expandDims(0), choiceMask), 2)
  const gates = tf.mul(tf.div(picked, tf.sum(picked, 0, true)), kept) as tf.Tensor2D
  return { experts, choiceMask, kept, slot, gates }
}

/** Stacks one MLP tensor of every expert: [E, ...shape]. */
function stacked(params: Params, prefix: string, E: number, name: string): tf.Tensor {
  return tf.stack(Array.from({ length: E }, (_, e) => params[`${prefix}.experts.${e}.${name}`]))
}

/** All experts' MLPs on their buffers [E, C, D] as batched matmuls. */
function expertMlps(buffers: tf.Tensor, spec: TransformerSpec, params: Params, prefix: string): tf.Tensor {
  const E = buffers.shape[0]!
  const lin = (x: tf.Tensor, layer: string) => {
    const y = tf.matMul(x as tf.Tensor3D, stacked(params, prefix, E, `${layer}.weight`) as tf.Tensor3D)
    return spec.bias ? tf.add(y, stacked(params, prefix, E, `${layer}.bias`).expandDims(1)) : y
  }
  const up = lin(buffers, 'fc1')
  const hidden =
    spec.activation === 'swiglu'
      ? tf.mul(activate(lin(buffers, 'gate'), 'swiglu'), up)
      : activate(up, spec.activation)
  return lin(hidden, 'fc2')
}

/**
 * A mixture-of-experts MLP on [..., D]. Tokens are scattered into per-expert buffers of
 * `expertCapacity` rows, all experts run as one batched matmul, and each token gathers its
 * kept choices back weighted by its gates; no per-token JavaScript loop, no data sync.
 * Identical experts reproduce the dense MLP exactly when no choice is dropped (the gates sum
 * to 1); a dropped choice contributes 0, and a token with every choice dropped passes
 * through the residual only. Gradients reach the router through the gates and the auxiliary
 * losses, and each expert through the rows it processed.
 */
export function moeMlp(
  x: tf.Tensor,
  spec: TransformerSpec,
  params: Params,
  prefix: string,
  training: boolean,
  capacityFactor?: number,
): MoEOutput {
  const moe = spec.moe!
  const E = moe.experts
  const k = moe.topK
  const D = spec.dModel
  const xf = x.reshape([-1, D])
  const N = xf.shape[0]!
  const logits = tf.matMul(xf as tf.Tensor2D, params[`${prefix}.router.weight`] as tf.Tensor2D)
  const probs = tf.softmax(logits) as tf.Tensor2D
  const factor = capacityFactor ?? (training ? moe.capacityFactor : moe.evalCapacityFactor)
  const C = expertCapacity(N, E, k, factor)
  const r = routeTopK(probs, k, C)

  // Which token fills each buffer row (token + 1; 0 = empty, read from a zero row). Dropped
  // choices all land on the extra row E·C, which is cut off.
  const tokenIds = tf.tile(tf.range(1, N + 1, 1, 'int32').expandDims(0), [k, 1])
  const filler = tf
    .scatterND(r.slot.reshape([k * N, 1]), tokenIds.reshape([k * N]), [E * C + 1])
    .slice([0], [E * C])
  const padded = tf.concat([tf.zeros([1, D]), xf], 0)
  const buffers = gatherRows(padded, filler).reshape([E, C, D])
  const y = expertMlps(buffers, spec, params, prefix).reshape([E * C, D])

  const yPadded = tf.concat([y, tf.zeros([1, D])], 0)
  const perChoice = gatherRows(yPadded, r.slot).reshape([k, N, D])
  const combined = tf.sum(tf.mul(perChoice, r.gates.expandDims(2)), 0)

  const fraction = tf.div(tf.sum(r.choiceMask, [0, 1]), N * k)
  const meanProb = tf.mean(probs, 0)
  const loadBalance = tf.mul(tf.sum(tf.mul(fraction, meanProb)), E) as tf.Scalar
  const zLoss = tf.mean(tf.square(tf.logSumExp(logits, 1))) as tf.Scalar
  return { output: combined.reshape(x.shape), loadBalance, zLoss }
}
