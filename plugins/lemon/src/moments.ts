import {
  type AxisMoments,
  type AxisRole,
  kvHeads,
  type MomentMap,
  paramTable,
  replicaFactors,
  type TransformerSpec,
  widenedMomentRule,
} from '@sprout/core'
import {
  circular,
  depthSchedule,
  extend,
  headAxis,
  kvHeadMap,
  queryHeadMap,
  residualOut,
  tiedNormName,
  widthPlan,
} from './expand.js'

/**
 * How Adam's moments follow a LEMON growth, or null when they are reset (see the README's
 * derivation). With the residual stream copied k times (D2 = k·D1), each replica of a stream
 * entry receives 1/k of the source's stream gradient; a duplicated head or FFN unit whose
 * outgoing weights are divided among its n copies receives 1/n of the source unit's gradient;
 * the inputs a weight reads are exact copies. So a weight's gradient is the source's times the
 * factor of its output side, and the norm before a tied head (which reads its copies undivided)
 * keeps factor 1. New layers start at zero moments: their output projections are zero, so every
 * other gradient in them is exactly zero. Exact for noiseStd 0; LEMON's zero-sum noise perturbs
 * the gradients in proportion to the noise. Returns null (reset) when dModel does not divide
 * (the residue entries make the stream gradient of the copies a mixture, not a scaled copy).
 */
export function lemonMomentMap(source: TransformerSpec, target: TransformerSpec): MomentMap | null {
  const plan = widthPlan(source, target)
  if (plan.r > 0) return null
  const hd = source.headDim
  const q = headAxis(queryHeadMap(source, target), hd)
  const g1 = source.nHeads / kvHeads(source)
  const g2 = target.nHeads / kvHeads(target)
  const kv = headAxis(kvHeadMap(source, target), hd)
  const residual = residualOut(plan)
  const ffn = circular(source.dFF, target.dFF)
  const axes: Partial<Record<AxisRole, AxisMoments>> = {
    residual: { index: residual, outputScale: new Float32Array(plan.D2).fill(1 / plan.k) },
    attn: { index: q, outputScale: replicaFactors(q) },
    // With g2 a multiple of g1 every source query head of a group appears equally often in each
    // copied group, and a copied key/value head gets 1/(its copies) of the source's gradient.
    kv: { index: kv, outputScale: g2 % g1 === 0 ? replicaFactors(kv) : new Float32Array(kv.length) },
    ffn: { index: ffn, outputScale: replicaFactors(ffn) },
    // New vocabulary rows and positions have no source: zero moments (index -1).
    vocab: { index: extend(source.vocabSize, target.vocabSize).map((i) => Math.max(i, -1)) },
    position: { index: extend(source.maxSeqLen, target.maxSeqLen).map((i) => Math.max(i, -1)) },
  }
  const tied = tiedNormName(source)
  const { slots } = depthSchedule(source.nLayers, target.nLayers)
  const map: MomentMap = {}
  for (const info of paramTable(target)) {
    const m = /^layers\.(\d+)\.(.*)$/.exec(info.name)
    const slot = m ? slots[Number(m[1])] : null
    if (slot?.fresh) {
      map[info.name] = {}
      continue
    }
    const from = m ? `layers.${slot!.src}.${m[2]}` : info.name
    const isKV = info.module === 'attn.k' || info.module === 'attn.v'
    const roles = isKV ? { ...info, axes: info.axes.map((a) => (a === 'attn' ? 'kv' : a)) } : info
    const full = tied !== null && (from === `${tied}.weight` || from === `${tied}.bias`)
    map[info.name] = widenedMomentRule(roles, from, axes, full)
  }
  return map
}
