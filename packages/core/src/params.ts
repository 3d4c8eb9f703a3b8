import * as tf from '@tensorflow/tfjs'
import { SproutError } from './errors.js'
import { estimateModelBytes } from './estimate.js'
import { assertFitsMemory } from './limits.js'
import { attnWidth, expertDFF, isMoELayer, kvWidth, specSummary, type TransformerSpec } from './spec.js'

/**
 * What an axis of a parameter means. Generic operators (LiGO, Mango, LEMON) act on
 * roles, not on names: growing `residual` touches every axis with that role.
 * - residual: the residual stream (dModel)
 * - attn: attention projection width, nHeads x headDim (head-major)
 * - kv: key/value projection width, nKVHeads x headDim (head-major); used only by
 *   grouped-query attention specs (nKVHeads set), otherwise k and v use 'attn'
 * - ffn: MLP hidden units (dFF)
 * - vocab / position / patch / classes / expert: not grown by width operators
 */
export type AxisRole =
  | 'residual'
  | 'attn'
  | 'kv'
  | 'ffn'
  | 'vocab'
  | 'position'
  | 'patch'
  | 'classes'
  | 'expert'

/** Which computation a parameter belongs to; the same for every layer. */
export type ModuleKind =
  | 'embed.tokens'
  | 'embed.positions'
  | 'embed.patch'
  | 'embed.cls'
  | 'embed.norm'
  | 'attn.q'
  | 'attn.k'
  | 'attn.v'
  | 'attn.o'
  | 'norm1'
  | 'norm2'
  | 'mlp.fc1'
  | 'mlp.gate'
  | 'mlp.fc2'
  | 'mlp.router'
  | 'norm'
  | 'head'
  | 'head.transform'
  | 'head.norm'

/** weight: a linear map [in, out]; bias: added to a linear's output; scale/shift: norm gamma/beta. */
export type ParamKind = 'weight' | 'bias' | 'scale' | 'shift' | 'embedding'

export type InitRule = { type: 'normal'; std: number } | { type: 'zeros' } | { type: 'ones' }

export interface ParamInfo {
  name: string
  shape: number[]
  axes: AxisRole[]
  module: ModuleKind
  kind: ParamKind
  /** Transformer layer, or null for embeddings, final norm and head. */
  layer: number | null
  /** Expert index inside a MoE MLP. */
  expert?: number
  init: InitRule
}

/** Parameters of a model: canonical name -> tensor. Weights are [in, out] (y = x·W). */
export type Params = Record<string, tf.Tensor>

export interface Model {
  spec: TransformerSpec
  params: Params
}

const STD = 0.02

/** The full role table of a spec, in canonical order. */
export function paramTable(spec: TransformerSpec): ParamInfo[] {
  const D = spec.dModel
  const A = attnWidth(spec)
  const KV = kvWidth(spec)
  const kvRole: AxisRole = spec.nKVHeads === undefined ? 'attn' : 'kv'
  const F = spec.dFF
  const out: ParamInfo[] = []
  const residualStd = STD / Math.sqrt(2 * spec.nLayers)
  const add = (
    name: string,
    shape: number[],
    axes: AxisRole[],
    module: ModuleKind,
    kind: ParamKind,
    layer: number | null,
    init: InitRule,
    expert?: number,
  ) => out.push({ name, shape, axes, module, kind, layer, init, ...(expert === undefined ? {} : { expert }) })
  const norm = (prefix: string, module: ModuleKind, layer: number | null) => {
    add(`${prefix}.weight`, [D], ['residual'], module, 'scale', layer, { type: 'ones' })
    if (spec.bias && spec.norm === 'layernorm')
      add(`${prefix}.bias`, [D], ['residual'], module, 'shift', layer, { type: 'zeros' })
  }
  const linear = (
    prefix: string,
    inAxis: AxisRole,
    outAxis: AxisRole,
    dims: [number, number],
    module: ModuleKind,
    layer: number | null,
    std = STD,
    expert?: number,
    withBias = spec.bias,
  ) => {
    add(`${prefix}.weight`, dims, [inAxis, outAxis], module, 'weight', layer, { type: 'normal', std }, expert)
    if (withBias)
      add(`${prefix}.bias`, [dims[1]], [outAxis], module, 'bias', layer, { type: 'zeros' }, expert)
  }

  if (spec.family === 'vit') {
    const img = spec.image!
    const patchIn = img.patch * img.patch * img.channels
    linear('embed.patch', 'patch', 'residual', [patchIn, D], 'embed.patch', null)
    add('embed.cls', [D], ['residual'], 'embed.cls', 'embedding', null, { type: 'normal', std: STD })
  } else {
    add('embed.tokens', [spec.vocabSize, D], ['vocab', 'residual'], 'embed.tokens', 'embedding', null, {
      type: 'normal',
      std: STD,
    })
  }
  if (spec.positional !== 'rotary')
    add(
      'embed.positions',
      [spec.maxSeqLen, D],
      ['position', 'residual'],
      'embed.positions',
      'embedding',
      null,
      {
        type: 'normal',
        std: STD,
      },
    )
  if (spec.normPlacement === 'post') norm('embed.norm', 'embed.norm', null)

  for (let l = 0; l < spec.nLayers; l++) {
    const p = `layers.${l}`
    norm(`${p}.norm1`, 'norm1', l)
    linear(`${p}.attn.q`, 'residual', 'attn', [D, A], 'attn.q', l)
    linear(`${p}.attn.k`, 'residual', kvRole, [D, KV], 'attn.k', l)
    linear(`${p}.attn.v`, 'residual', kvRole, [D, KV], 'attn.v', l)
    linear(`${p}.attn.o`, 'attn', 'residual', [A, D], 'attn.o', l, residualStd)
    norm(`${p}.norm2`, 'norm2', l)
    const mlp = (prefix: string, expert?: number) => {
      // Experts may be narrower than the dense MLP (moe.expertDFF, fine-grained experts).
      const H = expert === undefined ? F : expertDFF(spec)
      linear(`${prefix}.fc1`, 'residual', 'ffn', [D, H], 'mlp.fc1', l, STD, expert)
      if (spec.activation === 'swiglu')
        linear(`${prefix}.gate`, 'residual', 'ffn', [D, H], 'mlp.gate', l, STD, expert)
      linear(`${prefix}.fc2`, 'ffn', 'residual', [H, D], 'mlp.fc2', l, residualStd, expert)
    }
    if (isMoELayer(spec, l)) {
      linear(
        `${p}.mlp.router`,
        'residual',
        'expert',
        [D, spec.moe!.experts],
        'mlp.router',
        l,
        STD,
        undefined,
        false,
      )
      for (let e = 0; e < spec.moe!.experts; e++) mlp(`${p}.mlp.experts.${e}`, e)
    } else {
      mlp(`${p}.mlp`)
    }
  }
  if (spec.normPlacement === 'pre') norm('norm', 'norm', null)
  if (spec.family === 'vit') {
    linear('head', 'residual', 'classes', [D, spec.image!.classes], 'head', null)
  } else if (spec.mlmHead) {
    linear('head.transform', 'residual', 'residual', [D, D], 'head.transform', null)
    norm('head.norm', 'head.norm', null)
    if (spec.bias) add('head.bias', [spec.vocabSize], ['vocab'], 'head', 'bias', null, { type: 'zeros' })
  } else if (!spec.tieEmbeddings) {
    add('head.weight', [D, spec.vocabSize], ['residual', 'vocab'], 'head', 'weight', null, {
      type: 'normal',
      std: STD,
    })
  }
  return out
}

/** 32-bit FNV-1a hash: derives a stable per-parameter seed from (seed, name). */
export function hashSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0)
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Randomly initialised parameters; the same (spec, seed) gives the same weights on every backend. */
export function initParams(spec: TransformerSpec, seed: number): Params {
  const params: Params = {}
  for (const p of paramTable(spec)) {
    params[p.name] = tf.tidy(() => {
      switch (p.init.type) {
        case 'zeros':
          return tf.zeros(p.shape)
        case 'ones':
          return tf.ones(p.shape)
        case 'normal':
          return tf.truncatedNormal(p.shape, 0, p.init.std, 'float32', hashSeed(seed, p.name))
      }
    })
  }
  return params
}

/** A seeded random model; refuses (before allocating) a spec whose weights exceed the memory limit. */
export function initModel(spec: TransformerSpec, seed: number): Model {
  const need = estimateModelBytes(spec)
  assertFitsMemory(need.bytes, `a model of ${specSummary(spec)}`, need.breakdown)
  return { spec, params: initParams(spec, seed) }
}

/** Checks that params hold exactly the spec's tensors with the right shapes. */
export function validateParams(spec: TransformerSpec, params: Params): void {
  const table = paramTable(spec)
  const expected = new Set(table.map((p) => p.name))
  for (const p of table) {
    const t = params[p.name]
    if (!t) throw new SproutError('PARAMS_INVALID', `missing parameter "${p.name}" (shape [${p.shape}])`)
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      throw new SproutError(
        'PARAMS_INVALID',
        `parameter "${p.name}" has shape [${t.shape}], the spec needs [${p.shape}]`,
      )
  }
  for (const name of Object.keys(params))
    if (!expected.has(name))
      throw new SproutError('PARAMS_INVALID', `unexpected parameter "${name}": the spec has no such tensor`)
}

export function countParams(spec: TransformerSpec): number {
  return paramTable(spec).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0)
}

export function disposeParams(params: Params): void {
  for (const t of Object.values(params)) t.dispose()
}

export function disposeModel(model: Model): void {
  disposeParams(model.params)
}

/** A deep copy (new tensors) of a model. */
export function cloneModel(model: Model): Model {
  const params: Params = {}
  for (const [k, v] of Object.entries(model.params)) params[k] = tf.clone(v)
  return { spec: structuredClone(model.spec), params }
}
