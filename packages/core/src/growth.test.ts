import { describe, expect, it } from 'vitest'
import { GrowthError } from './errors.js'
import {
  assertGrowthOperator,
  assertNoShrink,
  capabilities,
  defineOperator,
  freshRunSchedule,
  OperatorRegistry,
  parseOptionPairs,
  parseOptions,
  z,
} from './growth.js'
import { learnedStartShape, startNoise } from './learned.js'
import { parseSpec } from './spec.js'

const op = defineOperator({
  name: 'toy',
  description: 'test operator',
  options: z.strictObject({
    steps: z.number().int().positive().default(100),
    mode: z.enum(['a', 'b']).default('a'),
  }),
  capabilities: capabilities('width', 'functionPreserving'),
  check: () => {},
  grow: async () => {
    throw new Error('unused')
  },
})

describe('growth contract', () => {
  it('registry refuses duplicates and names available methods when one is unknown', () => {
    const r = new OperatorRegistry().register(op)
    expect(() => r.register(op)).toThrow(/already registered/)
    expect(() => r.get('nope')).toThrow(/unknown method "nope"; available: toy/)
  })
  it('options: defaults filled, errors name the option', () => {
    expect(parseOptions(op, {})).toEqual({ steps: 100, mode: 'a' })
    expect(() => parseOptions(op, { steps: 'many' })).toThrow(/method "toy": option steps/)
    expect(() => parseOptions(op, { mode: 'c' })).toThrow(/option mode: "c" is not one of "a", "b"/)
    expect(() => parseOptions(op, { stpes: 3 })).toThrow(/unknown field\(s\) "stpes"/)
  })
  it('parses key=value pairs as JSON where possible', () => {
    expect(parseOptionPairs(['steps=100', 'mode=b', 'layers=[1,3]', 'noise=true'])).toEqual({
      steps: 100,
      mode: 'b',
      layers: [1, 3],
      noise: true,
    })
    expect(() => parseOptionPairs(['steps'])).toThrow(/key=value/)
  })
  it('validates plugin objects', () => {
    expect(() => assertGrowthOperator({ name: 'X y' }, './plugin.js')).toThrow(
      /\.\/plugin\.js is not a GrowthOperator: "name"/,
    )
    expect(() => assertGrowthOperator(op, 'toy')).not.toThrow()
  })
  it('capabilities: the named flags true, every other false', () => {
    expect(capabilities('width', 'functionPreserving')).toEqual({
      width: true,
      depth: false,
      heads: false,
      ffn: false,
      moe: false,
      learned: false,
      functionPreserving: true,
    })
    expect(Object.values(capabilities()).every((v) => v === false)).toBe(true)
    expect(Object.keys(capabilities()).length).toBe(7)
  })
  it('freshRunSchedule: 1% warm-up, cosine to 0.1 over every step, fresh optimizer, the note and extras', () => {
    expect(freshRunSchedule('why', { maskRampSteps: 50 })).toEqual({
      kind: 'cosine',
      peakLrScale: 1,
      warmupFraction: 0.01,
      decayFraction: 1,
      minLrRatio: 0.1,
      freshOptimizer: true,
      maskRampSteps: 50,
      note: 'why',
    })
    expect('maskRampSteps' in freshRunSchedule('why')).toBe(false)
  })
  it('learned starts: noise only where the start does not preserve the function, unless set', () => {
    expect(startNoise(undefined, true)).toBe(0)
    expect(startNoise(undefined, false)).toBe(0.01)
    expect(startNoise(0.2, true)).toBe(0.2)
    expect(startNoise(0, false)).toBe(0)
    const start = z.strictObject(learnedStartShape)
    expect(start.parse({})).toEqual({ widthInit: 'preserve', depthInit: 'stack' })
    expect(() => start.parse({ widthInit: 'zero' })).toThrow()
    expect(() => start.parse({ initNoise: -1 })).toThrow()
  })
  it('refuses shrinking and architecture changes', () => {
    const s = parseSpec({
      family: 'decoder',
      vocabSize: 10,
      maxSeqLen: 8,
      dModel: 16,
      nLayers: 2,
      nHeads: 2,
      dFF: 32,
    })
    expect(() => assertNoShrink(s, { ...s, nLayers: 1 }, 'toy')).toThrow(GrowthError)
    expect(() => assertNoShrink(s, { ...s, nLayers: 1 }, 'toy')).toThrow(
      /nLayers 1 is smaller than the source's 2/,
    )
    expect(() => assertNoShrink(s, { ...s, activation: 'relu' }, 'toy')).toThrow(/activation/)
    expect(() => assertNoShrink(s, { ...s, dModel: 32, headDim: 8 }, 'toy')).not.toThrow()
  })
})
