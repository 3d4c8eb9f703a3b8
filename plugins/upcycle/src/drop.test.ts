import { type Model, parseOptions, quietGrowthContext, type TransformerSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { type UpcycleOptions, upcycle } from './index.js'
import { dispose, source, spec } from './source.testutil.js'

const opts = (raw: Record<string, unknown> = {}): UpcycleOptions => parseOptions(upcycle, raw)
async function grow(src: Model, target: TransformerSpec, raw: Record<string, unknown> = {}, seed = 5) {
  upcycle.check(src.spec, target, opts(raw))
  return upcycle.grow(src, target, quietGrowthContext(seed), opts(raw))
}
const values = (t: tf.Tensor) => Array.from(t.dataSync())
const rows = (t: tf.Tensor) => t.arraySync() as number[][]
const columns = (t: tf.Tensor) => {
  const m = rows(t)
  return m[0].map((_, j) => m.map((r) => r[j]))
}
const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i])
/** Indices where the expert's unit (a column, row or entry) is not the dense one. */
const changed = (expert: number[][], dense: number[][]) =>
  expert.flatMap((u, i) => (same(u, dense[i]) ? [] : [i]))
function moments(xs: number[]) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  return { mean, std: Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length) }
}

describe('upcycle drop (Drop-Upcycling)', () => {
  it('re-initialises exactly round(r·dFF) units per expert, the same units in fc1, gate, bias and fc2, a different set per expert', async () => {
    const s = spec('decoder', { activation: 'swiglu', dFF: 30, nLayers: 2 })
    const src = source(s)
    const r = await grow(src, s, { drop: 0.3, experts: 6, layers: [1], verify: 'never' })
    const d = (n: string) => src.params[`layers.1.mlp.${n}`]
    const sets: string[] = []
    for (let e = 0; e < 6; e++) {
      const p = (n: string) => r.model.params[`layers.1.mlp.experts.${e}.${n}`]
      const units = changed(columns(p('fc1.weight')), columns(d('fc1.weight')))
      expect(units.length).toBe(9)
      expect(changed(columns(p('gate.weight')), columns(d('gate.weight')))).toEqual(units)
      expect(changed(rows(p('fc2.weight')), rows(d('fc2.weight')))).toEqual(units)
      const bias = changed(
        values(p('fc1.bias')).map((v) => [v]),
        values(d('fc1.bias')).map((v) => [v]),
      )
      expect(bias).toEqual(units)
      // Untouched: the fc2 bias (residual units) and every kept unit, bit for bit.
      expect(values(p('fc2.bias'))).toEqual(values(d('fc2.bias')))
      const kept = Array.from({ length: 30 }, (_, i) => i).filter((i) => !units.includes(i))
      const fc2 = rows(p('fc2.weight'))
      const dense2 = rows(d('fc2.weight'))
      for (const i of kept) expect(fc2[i]).toEqual(dense2[i])
      sets.push(units.join(','))
    }
    expect(new Set(sets).size).toBe(6)
    expect(r.report.details.droppedUnitsPerExpert).toBe(9)
    // Layers that stay dense are copied.
    expect(values(r.model.params['layers.0.mlp.fc1.weight'])).toEqual(
      values(src.params['layers.0.mlp.fc1.weight']),
    )
    dispose(r.model)
    dispose(src)
  })

  it('draws the new values from N(mean, std) of the dense matrix', async () => {
    const s = spec('decoder', { dModel: 64, nHeads: 4, dFF: 512, nLayers: 1 })
    const src = source(s)
    // A dense fc1 with a clear mean and spread, and an fc2 with another.
    tf.dispose([src.params['layers.0.mlp.fc1.weight'], src.params['layers.0.mlp.fc2.weight']])
    src.params['layers.0.mlp.fc1.weight'] = tf.randomNormal([64, 512], 0.3, 1.5, 'float32', 1)
    src.params['layers.0.mlp.fc2.weight'] = tf.randomNormal([512, 64], -0.2, 0.5, 'float32', 2)
    const r = await grow(src, s, { drop: 0.5, experts: 2, topK: 1, layers: [0], verify: 'never' })
    for (const [n, byColumn] of [
      ['fc1.weight', true],
      ['fc2.weight', false],
    ] as const) {
      const want = moments(values(src.params[`layers.0.mlp.${n}`]))
      for (let e = 0; e < 2; e++) {
        const t = r.model.params[`layers.0.mlp.experts.${e}.${n}`]
        const dense = src.params[`layers.0.mlp.${n}`]
        const [eu, du] = byColumn ? [columns(t), columns(dense)] : [rows(t), rows(dense)]
        const units = changed(eu, du)
        expect(units.length).toBe(256)
        const fresh = moments(units.flatMap((i) => eu[i]))
        // 16384 samples: the mean is within 4 standard errors, the std within 3 %.
        expect(Math.abs(fresh.mean - want.mean)).toBeLessThan((4 * want.std) / Math.sqrt(16384))
        expect(Math.abs(fresh.std / want.std - 1)).toBeLessThan(0.03)
      }
    }
    dispose(r.model)
    dispose(src)
  })

  it('drop 0 is plain upcycling bit for bit; drop > 0 is reported as not function preserving', async () => {
    const s = spec('decoder')
    const src = source(s)
    const plain = await grow(src, s, { experts: 4 })
    const zero = await grow(src, s, { experts: 4, drop: 0 })
    for (const name of Object.keys(plain.model.params))
      expect(values(zero.model.params[name])).toEqual(values(plain.model.params[name]))
    expect(zero.report.functionPreserving).toBe(true)
    const half = await grow(src, s, { experts: 4, drop: true })
    expect(half.report.details.drop).toBe(0.5)
    expect(half.report.details.droppedUnitsPerExpert).toBe(10)
    expect(half.report.functionPreserving).toBe(false)
    expect(half.report.maxAbsLogitDiff!).toBeGreaterThan(1e-3)
    for (const m of [plain, zero, half]) dispose(m.model)
    dispose(src)
  })

  it('combines with granularity: round(r·dFF/g) units of each shard', async () => {
    const s = spec('decoder', { dFF: 40 })
    const src = source(s)
    const r = await grow(src, s, { drop: 0.25, granularity: 2, experts: 4, topK: 2, verify: 'never' })
    expect(r.report.details.droppedUnitsPerExpert).toBe(5)
    expect(r.report.functionPreserving).toBe(false)
    dispose(r.model)
    dispose(src)
  })

  it('refuses a drop outside [0, 1], naming the option', () => {
    expect(() => opts({ drop: 1.5 })).toThrow(/option drop/)
    expect(() => opts({ drop: -0.1 })).toThrow(/option drop/)
    expect(() => opts({ drop: 'half' })).toThrow(/option drop/)
  })
})
