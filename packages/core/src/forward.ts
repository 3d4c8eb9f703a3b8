import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'
import { fusedAttention, fusedCrossEntropy, fusedNorm, hasFusedKernels, FUSED_KERNELS as K } from './fused.js'
import { moeMlp } from './moe.js'
import type { Model, Params } from './params.js'
import { activate, gatherRows } from './primitives.js'
import { attnWidth, isMoELayer, kvHeads, type TransformerSpec } from './spec.js'

export interface ForwardOptions {
  /** Training mode: affects MoE capacity (capacityFactor vs evalCapacityFactor). */
  training?: boolean
  /** Overrides the spec's MoE capacity factor; Infinity disables token dropping (lossless checks). */
  moeCapacityFactor?: number
}

export interface ForwardOutput {
  /** Text: [B, T, vocab]; vit: [B, classes]. */
  logits: tf.Tensor
  /** Weighted auxiliary losses (MoE load balancing + router z-loss), or null for dense models. */
  auxLoss: tf.Scalar | null
  /** Unweighted auxiliary terms, for logging. */
  aux: { loadBalance: tf.Scalar; zLoss: tf.Scalar } | null
}

/** y = x·W (+ b) over the last axis of x, for any leading shape. */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.shape.length - 1]!
  const outDim = weight.shape[1]!
  const x2 = x.reshape([-1, inDim]) as tf.Tensor2D
  const y = tf.fused.matMul({ a: x2, b: weight as tf.Tensor2D, bias })
  return y.reshape([...x.shape.slice(0, -1), outDim])
}

function linearNamed(x: tf.Tensor, params: Params, name: string): tf.Tensor {
  return linear(x, params[`${name}.weight`], params[`${name}.bias`])
}

/** LayerNorm or RMSNorm over the last axis. */
export function normalize(
  x: tf.Tensor,
  spec: TransformerSpec,
  scale: tf.Tensor,
  shift?: tf.Tensor,
): tf.Tensor {
  if (hasFusedKernels(K.layerNorm, K.layerNormGrad))
    return fusedNorm(x, scale, shift, spec.normEps, spec.norm !== 'layernorm')
  const axis = x.shape.length - 1
  let y: tf.Tensor
  if (spec.norm === 'layernorm') {
    const { mean, variance } = tf.moments(x, axis, true)
    y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, spec.normEps)))
  } else {
    y = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), axis, true), spec.normEps)))
  }
  y = tf.mul(y, scale)
  return shift ? tf.add(y, shift) : y
}

function normNamed(x: tf.Tensor, spec: TransformerSpec, params: Params, prefix: string): tf.Tensor {
  return normalize(x, spec, params[`${prefix}.weight`], params[`${prefix}.bias`])
}

/** A dense MLP (prefix like "layers.0.mlp" or "layers.0.mlp.experts.3") applied to [..., D]. */
export function denseMlp(x: tf.Tensor, spec: TransformerSpec, params: Params, prefix: string): tf.Tensor {
  const up = linearNamed(x, params, `${prefix}.fc1`)
  const hidden =
    spec.activation === 'swiglu'
      ? tf.mul(activate(linearNamed(x, params, `${prefix}.gate`), 'swiglu'), up)
      : activate(up, spec.activation)
  return linearNamed(hidden, params, `${prefix}.fc2`)
}

/** Additive mask, -1e9 above the diagonal (built per call: caching it would hold a tensor forever). */
function causalMask(T: number): tf.Tensor2D {
  const ones = tf.ones([T, T])
  return tf.mul(tf.sub(tf.linalg.bandPart(ones, 0, -1), tf.linalg.bandPart(ones, 0, 0)), -1e9) as tf.Tensor2D
}

/**
 * Rotary tables cos, sin [T, headDim] for positions 0..T-1, in the rotate_half layout
 * (frequency i fills columns i and i + headDim/2): angle(t, i) = t · theta^(-2i/headDim).
 * Computed in float32 steps like the PyTorch reference implementations.
 */
export function rotaryTables(
  T: number,
  headDim: number,
  theta: number,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = headDim / 2
  const cos = new Float32Array(T * headDim)
  const sin = new Float32Array(T * headDim)
  const f = Math.fround
  for (let i = 0; i < half; i++) {
    const invFreq = f(1 / f(theta ** f(f(2 * i) / headDim)))
    for (let t = 0; t < T; t++) {
      const a = f(t * invFreq)
      const c = Math.cos(a)
      const s = Math.sin(a)
      cos[t * headDim + i] = c
      cos[t * headDim + i + half] = c
      sin[t * headDim + i] = s
      sin[t * headDim + i + half] = s
    }
  }
  return { cos: tf.tensor2d(cos, [T, headDim]), sin: tf.tensor2d(sin, [T, headDim]) }
}

/** Applies rotary embeddings to x [..., T, headDim]: x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1]. */
export function applyRotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const hd = x.shape[x.shape.length - 1]!
  const half = hd / 2
  const x1 = tf.slice(
    x,
    x.shape.map(() => 0),
    [...x.shape.slice(0, -1), half],
  )
  const x2 = tf.slice(
    x,
    x.shape.map((_, i) => (i === x.shape.length - 1 ? half : 0)),
    [...x.shape.slice(0, -1), half],
  )
  const rotated = tf.concat([tf.neg(x2), x1], x.shape.length - 1)
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin))
}

/** Multi-head self-attention on [B, T, D] (rotary positions and grouped-query attention when the spec asks). */
export function attention(
  x: tf.Tensor,
  spec: TransformerSpec,
  params: Params,
  prefix: string,
  causal: boolean,
): tf.Tensor {
  const [B, T] = x.shape
  const H = spec.nHeads
  const KV = kvHeads(spec)
  const hd = spec.headDim
  if (hasFusedKernels(K.attention, K.attentionGrad)) {
    let [q, k, v] = (['q', 'k', 'v'] as const).map((n) => linearNamed(x, params, `${prefix}.${n}`))
    if (spec.positional === 'rotary') {
      // Rotate each head in place: view [B, T, heads, hd] against tables broadcast as [T, 1, hd].
      const { cos, sin } = rotaryTables(T!, hd, spec.ropeTheta ?? 10000)
      const [c, s] = [cos.reshape([T!, 1, hd]), sin.reshape([T!, 1, hd])]
      const rotate = (t: tf.Tensor, heads: number) =>
        applyRotary(t.reshape([B!, T!, heads, hd]), c, s).reshape(t.shape)
      q = rotate(q, H)
      k = rotate(k, KV)
    }
    return linearNamed(fusedAttention(q, k, v, H, KV, causal), params, `${prefix}.o`)
  }
  const split = (t: tf.Tensor, heads: number) => t.reshape([B, T, heads, hd]).transpose([0, 2, 1, 3])
  let q = split(linearNamed(x, params, `${prefix}.q`), H)
  let k = split(linearNamed(x, params, `${prefix}.k`), KV)
  let v = split(linearNamed(x, params, `${prefix}.v`), KV)
  if (spec.positional === 'rotary') {
    const { cos, sin } = rotaryTables(T!, hd, spec.ropeTheta ?? 10000)
    q = applyRotary(q, cos, sin)
    k = applyRotary(k, cos, sin)
  }
  if (KV !== H) {
    // Key/value head j serves query heads j·g .. j·g + g − 1.
    const g = H / KV
    // Rank-3 tile: tfjs has no tile gradient above rank 4.
    const repeat = (t: tf.Tensor) =>
      tf.tile(t.reshape([B! * KV, 1, T! * hd]), [1, g, 1]).reshape([B!, H, T!, hd])
    k = repeat(k)
    v = repeat(v)
  }
  let scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd))
  if (causal) scores = tf.add(scores, causalMask(T))
  const probs = tf.softmax(scores)
  const ctx = tf
    .matMul(probs, v)
    .transpose([0, 2, 1, 3])
    .reshape([B, T, attnWidth(spec)])
  return linearNamed(ctx, params, `${prefix}.o`)
}

/** Splits images [B, S, S, C] into flattened patches [B, N, p·p·C] (row-major patches, (py, px, c) inside). */
export function patchify(images: tf.Tensor, spec: TransformerSpec): tf.Tensor {
  const { size, patch, channels } = spec.image!
  const g = size / patch
  const B = images.shape[0]
  return images
    .reshape([B, g, patch, g, patch, channels])
    .transpose([0, 1, 3, 2, 4, 5])
    .reshape([B, g * g, patch * patch * channels])
}

function checkInputs(spec: TransformerSpec, inputs: tf.Tensor): void {
  if (spec.family === 'vit') {
    const { size, channels } = spec.image!
    const ok =
      inputs.rank === 4 &&
      inputs.shape[1] === size &&
      inputs.shape[2] === size &&
      inputs.shape[3] === channels
    if (!ok)
      throw new SproutError(
        'INPUT_INVALID',
        `vit input must be images [batch, ${size}, ${size}, ${channels}], got [${inputs.shape}]`,
      )
    return
  }
  if (inputs.rank !== 2 || inputs.dtype !== 'int32')
    throw new SproutError(
      'INPUT_INVALID',
      `text input must be int32 token ids [batch, seq], got ${inputs.dtype} [${inputs.shape}]`,
    )
  if (inputs.shape[1]! > spec.maxSeqLen)
    throw new SproutError(
      'INPUT_INVALID',
      `sequence length ${inputs.shape[1]} exceeds maxSeqLen ${spec.maxSeqLen}`,
    )
  const ids = inputs.dataSync()
  for (let i = 0; i < ids.length; i++)
    if (ids[i] < 0 || ids[i] >= spec.vocabSize)
      throw new SproutError(
        'INPUT_INVALID',
        `token id ${ids[i]} is outside the vocabulary [0, ${spec.vocabSize})`,
      )
}

function embed(spec: TransformerSpec, params: Params, inputs: tf.Tensor): tf.Tensor {
  let h: tf.Tensor
  if (spec.family === 'vit') {
    const B = inputs.shape[0]!
    const patches = linearNamed(patchify(inputs, spec), params, 'embed.patch')
    const cls = tf.tile(params['embed.cls'].reshape([1, 1, spec.dModel]), [B, 1, 1])
    h = tf.concat([cls, patches], 1)
  } else {
    h = gatherRows(params['embed.tokens'], inputs)
  }
  const T = h.shape[1]!
  if (spec.positional !== 'rotary') {
    // At full length the table is used as is (a no-op slice would still cost a pad in the gradient).
    const table = params['embed.positions']
    h = tf.add(h, T === table.shape[0] ? table : table.slice([0, 0], [T, spec.dModel]))
  }
  if (spec.normPlacement === 'post') h = normNamed(h, spec, params, 'embed.norm')
  return h
}

/**
 * Runs the transformer. Text families take int32 ids [B, T] and return logits [B, T, vocab];
 * vit takes images [B, S, S, C] and returns class logits [B, classes]. Tidy: only outputs survive.
 */
export function forwardDetailed(
  model: Model,
  inputs: tf.Tensor,
  options: ForwardOptions = {},
): ForwardOutput {
  const { spec, params } = model
  checkInputs(spec, inputs)
  const causal = spec.family === 'decoder'
  const out = tf.tidy(() => {
    let h = embed(spec, params, inputs)
    const lbTerms: tf.Scalar[] = []
    const zTerms: tf.Scalar[] = []
    const mlp = (x: tf.Tensor, l: number) => {
      if (!isMoELayer(spec, l)) return denseMlp(x, spec, params, `layers.${l}.mlp`)
      const r = moeMlp(
        x,
        spec,
        params,
        `layers.${l}.mlp`,
        options.training ?? false,
        options.moeCapacityFactor,
      )
      lbTerms.push(r.loadBalance)
      zTerms.push(r.zLoss)
      return r.output
    }
    for (let l = 0; l < spec.nLayers; l++) {
      const p = `layers.${l}`
      if (spec.normPlacement === 'pre') {
        h = tf.add(h, attention(normNamed(h, spec, params, `${p}.norm1`), spec, params, `${p}.attn`, causal))
        h = tf.add(h, mlp(normNamed(h, spec, params, `${p}.norm2`), l))
      } else {
        h = normNamed(tf.add(h, attention(h, spec, params, `${p}.attn`, causal)), spec, params, `${p}.norm1`)
        h = normNamed(tf.add(h, mlp(h, l)), spec, params, `${p}.norm2`)
      }
    }
    if (spec.normPlacement === 'pre') h = normNamed(h, spec, params, 'norm')
    let logits: tf.Tensor
    if (spec.family === 'vit') {
      const cls = h.slice([0, 0, 0], [h.shape[0]!, 1, spec.dModel]).reshape([h.shape[0]!, spec.dModel])
      logits = linearNamed(cls, params, 'head')
    } else if (spec.tieEmbeddings) {
      if (spec.mlmHead) {
        // BERT's masked-LM transform: dense, activation, norm; then the tied projection plus a bias.
        const t = activate(linearNamed(h, params, 'head.transform'), spec.activation)
        h = normNamed(t, spec, params, 'head.norm')
      }
      const [B, T] = h.shape
      logits = tf
        .matMul(h.reshape([-1, spec.dModel]), params['embed.tokens'], false, true)
        .reshape([B!, T!, spec.vocabSize])
      if (params['head.bias']) logits = tf.add(logits, params['head.bias'])
    } else {
      logits = linearNamed(h, params, 'head')
    }
    if (lbTerms.length === 0) return { logits }
    const n = lbTerms.length
    const loadBalance = tf.div(tf.addN(lbTerms), n) as tf.Scalar
    const zLoss = tf.div(tf.addN(zTerms), n) as tf.Scalar
    const moe = spec.moe!
    const auxLoss = tf.add(
      tf.mul(loadBalance, moe.auxLossWeight),
      tf.mul(zLoss, moe.zLossWeight),
    ) as tf.Scalar
    return { logits, auxLoss, loadBalance, zLoss }
  })
  return {
    logits: out.logits,
    auxLoss: out.auxLoss ?? null,
    aux: out.loadBalance ? { loadBalance: out.loadBalance, zLoss: out.zLoss! } : null,
  }
}

/** Logits only; auxiliary tensors are disposed. */
export function forward(model: Model, inputs: tf.Tensor, options: ForwardOptions = {}): tf.Tensor {
  const out = forwardDetailed(model, inputs, options)
  out.auxLoss?.dispose()
  out.aux?.loadBalance.dispose()
  out.aux?.zLoss.dispose()
  return out.logits
}

/** A training or evaluation batch. Text: ids [B, T] and targets [B, T]; vit: images and labels [B]. */
export interface Batch {
  inputs: tf.Tensor
  targets: tf.Tensor
  /** Per-target weights (masked LM: 1 at masked positions, 0 elsewhere). */
  weights?: tf.Tensor
}

/** Mean (or weighted mean) softmax cross-entropy of logits [..., C] against int targets [...]. */
export function crossEntropy(logits: tf.Tensor, targets: tf.Tensor, weights?: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const C = logits.shape[logits.shape.length - 1]!
    const flat = logits.reshape([-1, C])
    const N = flat.shape[0]!
    if (hasFusedKernels(K.crossEntropy, K.crossEntropyGrad))
      return fusedCrossEntropy(
        flat as tf.Tensor2D,
        targets.reshape([N]).toInt() as tf.Tensor1D,
        weights?.reshape([N]).toFloat() as tf.Tensor1D | undefined,
      )
    const logp = tf.logSoftmax(flat)
    // A one-hot product rather than a gather: the gather's gradient is an UnsortedSegmentSum
    // over N·C segments, which dominated a whole training step on the tfjs cpu backend.
    const picked = tf.sum(tf.mul(logp, tf.oneHot(targets.reshape([N]).toInt(), C, 1, 0, 'float32')), 1)
    if (!weights) return tf.neg(tf.mean(picked)) as tf.Scalar
    const w = weights.reshape([N]).toFloat()
    return tf.div(tf.neg(tf.sum(tf.mul(picked, w))), tf.maximum(tf.sum(w), 1e-9)) as tf.Scalar
  })
}

export interface LossOutput {
  /** Total loss to minimise: cross-entropy plus weighted auxiliary losses. */
  loss: tf.Scalar
  /** Cross-entropy alone. */
  ce: tf.Scalar
}

/** The model's training objective on a batch (causal LM, masked LM or classification). */
export function computeLoss(model: Model, batch: Batch, options: ForwardOptions = {}): LossOutput {
  return tf.tidy(() => {
    const out = forwardDetailed(model, batch.inputs, options)
    const ce = crossEntropy(out.logits, batch.targets, batch.weights)
    const loss = out.auxLoss ? (tf.add(ce, out.auxLoss) as tf.Scalar) : ce
    return { loss, ce }
  })
}

/** Scalar loss (cross-entropy + auxiliary), for use inside tf.variableGrads / optimizers. */
export function loss(model: Model, batch: Batch, options: ForwardOptions = { training: true }): tf.Scalar {
  const { loss: l, ce } = computeLoss(model, batch, options)
  if (ce !== l) ce.dispose()
  return l
}
