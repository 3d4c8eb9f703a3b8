import { type Family, type OperatorCapabilities, parseSpec, type TransformerSpec } from '@sprout/core'

/** The kinds of growth a fixture exercises; each maps to the capability of the same name. */
export type GrowthKind = 'width' | 'depth' | 'heads' | 'ffn' | 'moe'
export const growthKinds: readonly GrowthKind[] = ['width', 'depth', 'heads', 'ffn', 'moe']

/** One (source, target) pair the suite grows; `id` is "<family>/<kind>", e.g. "decoder/width". */
export interface Fixture {
  id: string
  family: Family
  kind: GrowthKind
  source: TransformerSpec
  target: TransformerSpec
}

/** Small sources: a few thousand parameters, so every check runs in well under a second. */
const body = { nLayers: 2, dModel: 16, nHeads: 2, headDim: 8, dFF: 32 }
const text = { vocabSize: 32, maxSeqLen: 8, ...body }
const baseSpecs: Record<Family, Record<string, unknown>> = {
  decoder: { family: 'decoder', ...text },
  encoder: { family: 'encoder', ...text },
  vit: { family: 'vit', ...body, image: { size: 8, patch: 4, channels: 1, classes: 4 } },
}

/** What each kind of growth changes in the source spec. */
const growthOf: Record<GrowthKind, (s: Record<string, unknown>) => Record<string, unknown>> = {
  width: (s) => ({ ...s, dModel: 32 }),
  depth: (s) => ({ ...s, nLayers: 4 }),
  heads: (s) => ({ ...s, nHeads: 4 }),
  ffn: (s) => ({ ...s, dFF: 64 }),
  moe: (s) => ({ ...s, moe: { experts: 4, topK: 2, layers: [0, 1] } }),
}

/** Builds the default fixture for one family and kind of growth. */
export function defaultFixture(family: Family, kind: GrowthKind): Fixture {
  const base = baseSpecs[family]
  return {
    id: `${family}/${kind}`,
    family,
    kind,
    source: parseSpec(base),
    target: parseSpec(growthOf[kind](base)),
  }
}

/** Every family x kind of growth. */
export function allFixtures(families: readonly Family[] = ['decoder', 'encoder', 'vit']): Fixture[] {
  return families.flatMap((f) => growthKinds.map((k) => defaultFixture(f, k)))
}

/** The fixtures whose kind of growth the operator claims. */
export function claimedFixtures(caps: OperatorCapabilities, fixtures: Fixture[]): Fixture[] {
  return fixtures.filter((f) => caps[f.kind])
}

/** Kinds of growth the operator does not claim; its check() must refuse them. */
export function unclaimedKinds(caps: OperatorCapabilities): GrowthKind[] {
  return growthKinds.filter((k) => !caps[k])
}

/**
 * A 4-layer d16 decoder (vocab 40, 2 heads, dFF 32) with `over` applied: the source the depth
 * methods' own tests (stacking's layer maps, block expansion) vary field by field.
 */
export function depthTestDecoder(over: Record<string, unknown> = {}): TransformerSpec {
  return parseSpec({
    family: 'decoder',
    vocabSize: 40,
    maxSeqLen: 8,
    dModel: 16,
    nLayers: 4,
    nHeads: 2,
    dFF: 32,
    ...over,
  })
}
