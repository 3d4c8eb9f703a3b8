import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { GrowthError } from './errors.js'
import { applyMomentMap, copyMoments, replicaFactors, widenedMomentRule, zeroMoments } from './moments.js'
import type { ParamInfo } from './params.js'

const arr = (t: tf.Tensor) => Array.from(t.dataSync())

describe('applyMomentMap', () => {
  it('gathers along each axis and scales m by c and v by c² (hand-computed)', () => {
    const before = tf.memory().numTensors
    // Source W (2x3); target (3x4): rows [0, 1, -1], columns [2, 0, 0, 1] with column factors
    // [1, 0.5, 0.5, 2] and a whole-tensor factor 3.
    const state = {
      'm.w': tf.tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]),
      'v.w': tf.tensor([
        [1, 4, 9],
        [16, 25, 36],
      ]),
      'm.b': tf.tensor([7, 8]),
      'v.b': tf.tensor([49, 64]),
    }
    const out = applyMomentMap(
      {
        w: {
          from: 'w',
          index: [
            [0, 1, -1],
            [2, 0, 0, 1],
          ],
          scale: [null, [1, 0.5, 0.5, 2]],
          factor: 3,
        },
        b: copyMoments('b'),
        fresh: zeroMoments(),
      },
      state,
      { w: [3, 4], b: [2], fresh: [2, 2] },
    )
    expect(arr(out['m.w'])).toEqual([9, 1.5, 1.5, 12, 18, 6, 6, 30, 0, 0, 0, 0])
    // v: c² = 9 · scale²
    expect(arr(out['v.w'])).toEqual([81, 2.25, 2.25, 144, 324, 36, 36, 900, 0, 0, 0, 0])
    expect(arr(out['m.b'])).toEqual([7, 8])
    expect(arr(out['v.fresh'])).toEqual([0, 0, 0, 0])
    tf.dispose(Object.values(out))
    // The source state is not consumed.
    expect(arr(state['m.b'])).toEqual([7, 8])
    tf.dispose(Object.values(state))
    expect(tf.memory().numTensors).toBe(before)
  })

  it('refuses a missing rule, a missing source and a bad index, naming the parameter', () => {
    const before = tf.memory().numTensors
    const state = { 'm.w': tf.zeros([2]), 'v.w': tf.zeros([2]) }
    expect(() => applyMomentMap({}, state, { w: [2] })).toThrow(/no rule for target parameter "w"/)
    expect(() => applyMomentMap({ w: copyMoments('x') }, state, { w: [2] })).toThrow(/no moments for "x"/)
    expect(() => applyMomentMap({ w: { from: 'w', index: [[0, 2, 1]] } }, state, { w: [3] })).toThrow(
      GrowthError,
    )
    expect(() => applyMomentMap({ w: copyMoments('w') }, state, { w: [3] })).toThrow(/no index maps it/)
    const unknownSlot = { 'q.w': tf.zeros([2]) }
    expect(() => applyMomentMap({ w: copyMoments('w') }, unknownSlot, { w: [2] })).toThrow(/slot "q"/)
    tf.dispose([...Object.values(state), ...Object.values(unknownSlot)])
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('widenedMomentRule', () => {
  const info = (axes: ParamInfo['axes'], kind: ParamInfo['kind']): ParamInfo => ({
    name: 'p',
    shape: [],
    axes,
    module: 'mlp.fc1',
    kind,
    layer: 0,
    init: { type: 'zeros' },
  })
  const residual = { index: [0, 1, 0, 1], outputScale: [0.5, 0.5, 0.5, 0.5] }
  const ffn = { index: [0, 1, 2, 0], outputScale: replicaFactors([0, 1, 2, 0]) }
  it('keeps factor 1 on a weight input side and takes the output factors', () => {
    const r = widenedMomentRule(info(['residual', 'ffn'], 'weight'), 'src', { residual, ffn })
    expect(r.index).toEqual([residual.index, ffn.index])
    expect(r.scale?.[0]).toBeNull()
    expect(Array.from(r.scale?.[1] ?? [])).toEqual([0.5, 1, 1, 0.5])
  })
  it('treats embeddings, biases and norms as output sides; fullGradient drops the factor', () => {
    expect(widenedMomentRule(info(['vocab', 'residual'], 'embedding'), 's', { residual }).scale).toEqual([
      null,
      residual.outputScale,
    ])
    expect(widenedMomentRule(info(['residual'], 'scale'), 's', { residual }).scale).toEqual([
      residual.outputScale,
    ])
    expect(widenedMomentRule(info(['residual'], 'scale'), 's', { residual }, true).scale).toEqual([null])
  })
})
