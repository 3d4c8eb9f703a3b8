import { disposeModel, initModel, paramTable, parseOptions, quietGrowthContext } from '@sprout/core'
import { depthTestDecoder, describeGrowthOperator, growthRefusal } from '@sprout/testkit'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import stack, { checkStack, parseLayerSlices, sliceOrder, stackOptions } from './index.js'

const spec = depthTestDecoder
const opts = (layers: string | number, extra: Record<string, unknown> = {}) =>
  stackOptions.parse({ layers, ...extra })

const refusal = growthRefusal

describe('depth up-scaling (option layers)', () => {
  it('parses ranges and single indices into the concatenated layer order', () => {
    expect(sliceOrder(parseLayerSlices('0-23,8-31', 32))).toEqual([
      ...Array.from({ length: 24 }, (_, i) => i),
      ...Array.from({ length: 24 }, (_, i) => 8 + i),
    ])
    expect(sliceOrder(parseLayerSlices(' 0-1, 3 ,3,1-2', 4))).toEqual([0, 1, 3, 3, 1, 2])
    expect(sliceOrder(parseLayerSlices(2, 4))).toEqual([2])
  })

  it('copies source layer order[i] into target layer i, and embeddings, final norm and head unchanged', async () => {
    const src = spec({ tieEmbeddings: false })
    const source = initModel(src, 3)
    const target = spec({ tieEmbeddings: false, nLayers: 6 })
    const before = tf.memory().numTensors
    const { model, report } = await stack.grow(source, target, quietGrowthContext(), opts('0-2,1-3'))
    // Hand-written mapping for 0-2,1-3: target 0,1,2 ← source 0,1,2; target 3,4,5 ← source 1,2,3.
    const expected = [0, 1, 2, 1, 2, 3]
    expect(report.details.layerOrder).toEqual(expected)
    expect(report.details.mode).toBe('depth-up-scaling')
    expect(report.functionPreserving).toBe(false)
    for (const [name, t] of Object.entries(model.params)) {
      const m = /^layers\.(\d+)\.(.*)$/.exec(name)
      const from = m ? `layers.${expected[Number(m[1])]}.${m[2]}` : name
      expect(Array.from(t.dataSync()), name).toEqual(Array.from(source.params[from].dataSync()))
    }
    // every target parameter, no more
    expect(Object.keys(model.params).sort()).toEqual(
      paramTable(target)
        .map((p) => p.name)
        .sort(),
    )
    disposeModel(model)
    expect(tf.memory().numTensors).toBe(before)
    disposeModel(source)
  })

  it('is not function preserving (SOLAR continues pretraining): logits change', async () => {
    const { maxAbsLogitDiff } = await import('@sprout/core')
    const source = initModel(spec(), 5)
    const { model } = await stack.grow(source, spec({ nLayers: 6 }), quietGrowthContext(), opts('0-2,1-3'))
    expect(maxAbsLogitDiff(source, model)).toBeGreaterThan(1e-3)
    disposeModel(model)
    disposeModel(source)
  })

  it('refuses a target whose nLayers differs from the slices, naming both counts', () => {
    const msg = refusal(() => checkStack(spec(), spec({ nLayers: 8 }), opts('0-2,1-3')))
    expect(msg).toContain('lists 6 layers')
    expect(msg).toContain('nLayers 8')
  })

  it('refuses ranges outside the source, naming the bad range', () => {
    const msg = refusal(() => checkStack(spec(), spec({ nLayers: 6 }), opts('0-2,2-4')))
    expect(msg).toContain('"2-4"')
    expect(msg).toContain('0-3')
  })

  it('refuses descending ranges and says how to write them', () => {
    expect(refusal(() => checkStack(spec(), spec({ nLayers: 6 }), opts('0-2,3-1')))).toContain('1-3')
  })

  it('refuses malformed values at option parsing, naming the option', () => {
    for (const bad of ['0-', 'a-b', '0-1;2', '', '1--2', -1]) {
      const msg = refusal(() => parseOptions(stack, { layers: bad }))
      expect(msg).toContain('layers')
    }
  })

  it('refuses layers together with another mode or a factor', () => {
    expect(
      refusal(() => checkStack(spec(), spec({ nLayers: 6 }), opts('0-2,1-3', { mode: 'interleave' }))),
    ).toContain('mode=interleave')
    expect(refusal(() => checkStack(spec(), spec({ nLayers: 6 }), opts('0-2,1-3', { factor: 2 })))).toContain(
      'factor=2',
    )
  })

  it('refuses width changes and misplaced mixture-of-experts copies', () => {
    expect(refusal(() => checkStack(spec(), spec({ nLayers: 6, dModel: 32 }), opts('0-2,1-3')))).toContain(
      'dModel',
    )
    const moe = { experts: 4, topK: 2 }
    const msg = refusal(() =>
      checkStack(
        spec({ moe: { ...moe, layers: [1] } }),
        spec({ nLayers: 6, moe: { ...moe, layers: [1] } }),
        opts('0-2,1-3'),
      ),
    )
    expect(msg).toContain('moe.layers to [1, 3]')
    expect(() =>
      checkStack(
        spec({ moe: { ...moe, layers: [1] } }),
        spec({ nLayers: 6, moe: { ...moe, layers: [1, 3] } }),
        opts('0-2,1-3'),
      ),
    ).not.toThrow()
  })

  it('`sprout list` says this mode is not function preserving', () => {
    expect(stack.description).toMatch(/depth up-scaling.*not function preserving/)
  })
})

// The suite's depth fixtures grow 2 → 4 layers: 0-1,0-1 is SOLAR's recipe at that size.
describe('depth up-scaling conformance', () =>
  describeGrowthOperator(stack, { options: { layers: '0-1,0-1' } }))
