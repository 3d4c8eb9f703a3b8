import {
  type AxisRole,
  GrowthError,
  kvHeads,
  type MoESpec,
  specDifference,
  type TransformerSpec,
} from '@sprout/core'

const M = 'hypercloning'

export function refuse(message: string): never {
  throw new GrowthError(`${M}: ${message}`)
}

/** How many copies each width role gets: target size / source size, each an integer ≥ 1. */
export interface WidthFactors {
  /** dModel' / dModel. */
  residual: number
  /** nHeads' / nHeads (heads are cloned, headDim is kept). */
  attn: number
  /** Key/value heads' / key/value heads (grouped-query attention); always equal to `attn`. */
  kv: number
  /** dFF' / dFF (and the experts' width under a mixture of experts). */
  ffn: number
}

/** Copies along an axis of this role (1 for the roles width growth never touches). */
export function roleFactor(role: AxisRole, f: WidthFactors): number {
  switch (role) {
    case 'residual':
      return f.residual
    case 'attn':
      return f.attn
    case 'kv':
      return f.kv
    case 'ffn':
      return f.ffn
    default:
      return 1
  }
}

function factor(what: string, from: number, to: number): number {
  if (to < from) refuse(`target ${what} ${to} is smaller than the source's ${from}; growth never shrinks`)
  if (to % from !== 0)
    refuse(
      `target ${what} ${to} is not an integer multiple of the source's ${from}; HyperCloning clones whole copies (choose ${2 * from}, ${3 * from}, ...) — use lemon for non-integer ratios`,
    )
  return to / from
}

/** Same fields, compared as JSON, with the fix named in the error. */
const KEPT = [
  ['family', 'HyperCloning keeps the model family'],
  ['vocabSize', 'HyperCloning keeps the vocabulary; grow it with lemon'],
  ['maxSeqLen', 'HyperCloning keeps the positions; grow maxSeqLen with lemon'],
  ['nLayers', 'HyperCloning grows width only; grow depth with stack or lemon before or after'],
  [
    'headDim',
    'HyperCloning clones heads and keeps headDim; set nHeads to a multiple of the source heads instead',
  ],
  ['norm', 'growth keeps the architecture'],
  ['normPlacement', 'growth keeps the architecture'],
  ['normEps', 'cloned norms see the same mean and variance, so eps must stay'],
  ['activation', 'growth keeps the architecture'],
  ['bias', 'growth keeps the architecture'],
  ['positional', 'growth keeps the positional scheme'],
  ['ropeTheta', 'growth keeps the positional scheme'],
  ['mlmHead', 'growth keeps the masked-LM head'],
  ['image', 'HyperCloning keeps the image settings (size, patch, channels, classes)'],
] as const satisfies readonly (readonly [keyof TransformerSpec, string])[]

/** The expert MLP width of a MoE spec (core's moe.expertDFF, else dFF). */
function expertWidth(spec: TransformerSpec): number {
  return spec.moe?.expertDFF ?? spec.dFF
}

function checkMoE(source: TransformerSpec, target: TransformerSpec, ffn: number): void {
  if (!source.moe && !target.moe) return
  if (!source.moe || !target.moe)
    refuse(
      `target ${target.moe ? 'has' : 'has no'} mixture-of-experts layers but the source ${source.moe ? 'has' : 'has none'}; HyperCloning keeps the MoE layout (turn MLPs into experts with upcycle)`,
    )
  const strip = (m: MoESpec) => JSON.stringify({ ...m, expertDFF: undefined })
  if (strip(source.moe) !== strip(target.moe))
    refuse(
      `target moe ${strip(target.moe)} differs from the source's ${strip(source.moe)}; HyperCloning keeps experts, topK, layers and capacities (change them with upcycle)`,
    )
  const want = expertWidth(source) * ffn
  if (expertWidth(target) !== want)
    refuse(
      `target expert width ${expertWidth(target)} must be the source's ${expertWidth(source)} × ${ffn} (the dFF factor), i.e. moe.expertDFF ${want}`,
    )
}

/** Throws GrowthError unless target is source widened by integer factors; returns the factors. */
export function widthFactors(source: TransformerSpec, target: TransformerSpec): WidthFactors {
  for (const [field, why] of KEPT) {
    const d = specDifference(source, target, [field])
    if (d) refuse(`target ${field} ${d.target} differs from the source's ${d.source}; ${why}`)
  }
  if (source.tieEmbeddings !== target.tieEmbeddings) {
    if (source.tieEmbeddings)
      refuse(
        'the source ties its head to the token embeddings and the target does not; untying is not supported: keep tieEmbeddings true (HyperCloning scales the final norm instead)',
      )
    refuse(
      'the target ties its head to the token embeddings but the source does not; keep tieEmbeddings false',
    )
  }
  const f: WidthFactors = {
    residual: factor('dModel', source.dModel, target.dModel),
    attn: factor('nHeads', source.nHeads, target.nHeads),
    kv: factor('key/value heads (nKVHeads)', kvHeads(source), kvHeads(target)),
    ffn: factor('dFF', source.dFF, target.dFF),
  }
  if (f.kv !== f.attn)
    refuse(
      `target key/value heads ${kvHeads(target)} must be the source's ${kvHeads(source)} × ${f.attn} (the nHeads factor), so each cloned query head keeps reading a clone of its key/value head${source.nKVHeads === undefined ? '; leave nKVHeads unset' : `: set nKVHeads to ${kvHeads(source) * f.attn}`}`,
    )
  checkMoE(source, target, f.ffn)
  return f
}
