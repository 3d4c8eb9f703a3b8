import { z } from 'zod'
import { SproutError } from './errors.js'

export type Family = 'decoder' | 'encoder' | 'vit'
export type NormKind = 'layernorm' | 'rmsnorm'
export type NormPlacement = 'pre' | 'post'
export type Activation = 'gelu' | 'gelu_tanh' | 'relu' | 'swiglu'
/** How positions enter: a learned table added to the embeddings, or rotary embeddings applied to q and k. */
export type Positional = 'learned' | 'rotary'

export interface MoESpec {
  /** Number of experts E. */
  experts: number
  /** Experts each token is routed to (token-choice top-k). */
  topK: number
  /** Layer indices whose MLP is a mixture of experts. */
  layers: number[]
  capacityFactor: number
  evalCapacityFactor: number
  auxLossWeight: number
  zLossWeight: number
  /**
   * Hidden width of each expert's MLP (fine-grained experts, e.g. granular upcycling's dFF / g).
   * Absent: experts are as wide as the dense MLP (dFF). Present only when it differs from dFF.
   */
  expertDFF?: number
}

export interface ImageSpec {
  size: number
  patch: number
  channels: number
  classes: number
}

export interface TransformerSpec {
  family: Family
  /** Token vocabulary (text families); 0 for vit. */
  vocabSize: number
  /** Longest sequence: tokens for text, patches + class token for vit. */
  maxSeqLen: number
  dModel: number
  nLayers: number
  nHeads: number
  headDim: number
  dFF: number
  norm: NormKind
  normPlacement: NormPlacement
  normEps: number
  activation: Activation
  bias: boolean
  tieEmbeddings: boolean
  moe?: MoESpec
  image?: ImageSpec
  /**
   * 'learned' (default, field absent): an embed.positions table. 'rotary': no position table;
   * q and k are rotated per head (LLaMA's rotate_half convention, frequencies ropeTheta^(-2i/headDim)).
   * Present only when not the default, so specs of existing models are unchanged.
   */
  positional?: Positional
  /** Rotary base (default 10000); present only when positional is 'rotary'. */
  ropeTheta?: number
  /**
   * Key/value heads for grouped-query attention (each shared by nHeads / nKVHeads query heads).
   * Present only when it differs from nHeads; k and v weights are then [dModel, nKVHeads x headDim].
   */
  nKVHeads?: number
  /**
   * Encoder only: a BERT-style masked-LM head transform (dense D->D, activation, norm) before the
   * tied output projection, plus an output bias over the vocabulary. Present only when true.
   */
  mlmHead?: boolean
}

const posInt = z.number().int().positive()

const moeSchema = z.strictObject({
  experts: z.number().int().min(1),
  topK: z.number().int().min(1).default(2),
  layers: z.array(z.number().int().min(0)),
  capacityFactor: z.number().positive().default(1.25),
  evalCapacityFactor: z.number().positive().default(2.0),
  auxLossWeight: z.number().min(0).default(0.01),
  zLossWeight: z.number().min(0).default(0.001),
  expertDFF: z.number().int().positive().optional(),
})

const imageSchema = z.strictObject({
  size: posInt,
  patch: posInt,
  channels: posInt,
  classes: posInt,
})

const specSchema = z.strictObject({
  family: z.enum(['decoder', 'encoder', 'vit']),
  vocabSize: z.number().int().min(0).optional(),
  maxSeqLen: posInt.optional(),
  dModel: posInt,
  nLayers: posInt,
  nHeads: posInt,
  headDim: posInt.optional(),
  dFF: posInt,
  norm: z.enum(['layernorm', 'rmsnorm']).default('layernorm'),
  normPlacement: z.enum(['pre', 'post']).default('pre'),
  normEps: z.number().positive().default(1e-5),
  activation: z.enum(['gelu', 'gelu_tanh', 'relu', 'swiglu']).default('gelu'),
  bias: z.boolean().default(true),
  tieEmbeddings: z.boolean().optional(),
  moe: moeSchema.optional(),
  image: imageSchema.optional(),
  positional: z.enum(['learned', 'rotary']).optional(),
  ropeTheta: z.number().positive().optional(),
  nKVHeads: posInt.optional(),
  mlmHead: z.boolean().optional(),
})

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  const s = JSON.stringify(value)
  return s.length > 40 ? `${s.slice(0, 37)}...` : s
}

/** Formats the first zod issue as "spec.<path>: <problem>". */
export function formatIssue(prefix: string, issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.map(String).join('.')
  let value: unknown = input
  for (const key of issue.path)
    value = (value as Record<PropertyKey, unknown> | undefined)?.[key as PropertyKey]
  const where = path ? `${prefix}.${path}` : prefix
  if (issue.code === 'unrecognized_keys')
    return `${where}: unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`
  if (issue.code === 'invalid_value' && 'values' in issue)
    return `${where}: ${describe(value)} is not one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
  if (issue.code === 'invalid_type' && value === undefined) return `${where}: required field is missing`
  return `${where}: ${issue.message} (got ${describe(value)})`
}

function fail(message: string): never {
  throw new SproutError('SPEC_INVALID', message)
}

/**
 * Validates a spec and fills defaults. Errors name the field, e.g.
 * "dModel 100 is not divisible by nHeads 3".
 */
export function parseSpec(input: unknown): TransformerSpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    fail(
      'spec: expected a JSON object with TransformerSpec fields (family, dModel, nLayers, nHeads, dFF, ...)',
    )
  const parsed = specSchema.safeParse(input)
  if (!parsed.success) fail(formatIssue('spec', parsed.error.issues[0], input))
  const s = parsed.data
  const family = s.family
  if (s.headDim === undefined && s.dModel % s.nHeads !== 0)
    fail(
      `spec: dModel ${s.dModel} is not divisible by nHeads ${s.nHeads}; choose nHeads dividing dModel or set headDim`,
    )
  const headDim = s.headDim ?? s.dModel / s.nHeads
  let vocabSize = s.vocabSize ?? 0
  let maxSeqLen = s.maxSeqLen
  let tieEmbeddings = s.tieEmbeddings
  if (family === 'vit') {
    const img = s.image ?? fail('spec.image: required for family "vit" ({size, patch, channels, classes})')
    if (img.size % img.patch !== 0)
      fail(`spec.image: size ${img.size} is not divisible by patch ${img.patch}`)
    const tokens = patchCount(img) + 1
    if (maxSeqLen !== undefined && maxSeqLen !== tokens)
      fail(
        `spec.maxSeqLen: ${maxSeqLen} does not match the ${tokens} tokens of a ${img.size}px image in ${img.patch}px patches plus the class token; omit it`,
      )
    maxSeqLen = tokens
    if (tieEmbeddings)
      fail('spec.tieEmbeddings: a vit classifier head cannot be tied to an embedding; set it to false')
    tieEmbeddings = false
    vocabSize = 0
  } else {
    if (s.image) fail(`spec.image: only family "vit" takes an image; remove it for family "${family}"`)
    if (vocabSize < 2)
      fail(
        `spec.vocabSize: family "${family}" needs a vocabulary of at least 2 tokens (got ${describe(s.vocabSize)})`,
      )
    if (maxSeqLen === undefined) fail(`spec.maxSeqLen: required field is missing`)
    tieEmbeddings = tieEmbeddings ?? true
  }
  if (s.moe) {
    const m = s.moe
    if (m.topK > m.experts) fail(`spec.moe.topK: ${m.topK} exceeds the ${m.experts} experts`)
    for (const l of m.layers)
      if (l >= s.nLayers) fail(`spec.moe.layers: layer ${l} does not exist (nLayers is ${s.nLayers})`)
    if (new Set(m.layers).size !== m.layers.length) fail('spec.moe.layers: a layer index is listed twice')
    m.layers = [...m.layers].sort((a, b) => a - b)
    if (m.expertDFF === s.dFF) delete m.expertDFF
  }
  const spec: TransformerSpec = {
    family,
    vocabSize,
    maxSeqLen: maxSeqLen!,
    dModel: s.dModel,
    nLayers: s.nLayers,
    nHeads: s.nHeads,
    headDim,
    dFF: s.dFF,
    norm: s.norm,
    normPlacement: s.normPlacement,
    normEps: s.normEps,
    activation: s.activation,
    bias: s.bias,
    tieEmbeddings: tieEmbeddings!,
  }
  if (s.moe) spec.moe = s.moe as MoESpec
  if (s.image) spec.image = s.image
  if (positionalKind(s) === 'rotary') {
    if (headDim % 2 !== 0) fail(`spec.positional: rotary embeddings need an even headDim (got ${headDim})`)
    spec.positional = 'rotary'
    spec.ropeTheta = s.ropeTheta ?? 10000
  } else if (s.ropeTheta !== undefined) {
    fail('spec.ropeTheta: only used with positional "rotary"; remove it or set positional to "rotary"')
  }
  if (s.nKVHeads !== undefined && s.nKVHeads !== s.nHeads) {
    if (s.nKVHeads > s.nHeads || s.nHeads % s.nKVHeads !== 0)
      fail(
        `spec.nKVHeads: ${s.nKVHeads} must divide nHeads ${s.nHeads} (each key/value head serves nHeads / nKVHeads query heads)`,
      )
    spec.nKVHeads = s.nKVHeads
  }
  if (s.mlmHead) {
    if (family !== 'encoder')
      fail(`spec.mlmHead: only family "encoder" has a masked-LM head (got "${family}")`)
    if (!tieEmbeddings)
      fail(
        'spec.mlmHead: the masked-LM head projects with the tied token embeddings; set tieEmbeddings to true',
      )
    spec.mlmHead = true
  }
  return spec
}

/** Width of the attention projections: nHeads x headDim (may differ from dModel). */
export function attnWidth(spec: TransformerSpec): number {
  return spec.nHeads * spec.headDim
}

/** Key/value heads (nKVHeads when grouped-query attention is used, else nHeads). */
export function kvHeads(spec: TransformerSpec): number {
  return spec.nKVHeads ?? spec.nHeads
}

/** Width of the key and value projections: kvHeads x headDim. */
export function kvWidth(spec: TransformerSpec): number {
  return kvHeads(spec) * spec.headDim
}

/** 'learned' or 'rotary' (a spec without the field uses learned positions). */
export function positionalKind(spec: Pick<TransformerSpec, 'positional'>): Positional {
  return spec.positional ?? 'learned'
}

/** Patches an image is cut into (a ViT sees these plus the class token). */
export function patchCount(image: Pick<ImageSpec, 'size' | 'patch'>): number {
  return (image.size / image.patch) ** 2
}

/** Hidden width of an expert's MLP: moe.expertDFF when set, else dFF. */
export function expertDFF(spec: TransformerSpec): number {
  return spec.moe?.expertDFF ?? spec.dFF
}

export function isMoELayer(spec: TransformerSpec, layer: number): boolean {
  return spec.moe?.layers.includes(layer) ?? false
}

export function specSummary(spec: TransformerSpec): string {
  const expertFF = spec.moe?.expertDFF === undefined ? '' : ` ff${spec.moe.expertDFF}`
  const moe = spec.moe
    ? ` moe(${spec.moe.experts}x${expertFF} top${spec.moe.topK} @${spec.moe.layers.join(',')})`
    : ''
  const kv = spec.nKVHeads !== undefined ? ` kv${spec.nKVHeads}` : ''
  const rope = spec.positional === 'rotary' ? ' rope' : ''
  return `${spec.family} L${spec.nLayers} d${spec.dModel} h${spec.nHeads}x${spec.headDim}${kv} ff${spec.dFF}${moe}${rope}`
}
