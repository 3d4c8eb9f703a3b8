import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { crossEntropy } from './forward.js'
import { gatherRows } from './primitives.js'

describe('gatherRows', () => {
  it('matches tf.gather in value and gradient, duplicate ids summed', () => {
    const before = tf.memory().numTensors
    tf.tidy(() => {
      const table = tf.randomNormal([7, 3], 0, 1, 'float32', 1)
      const ids = tf.tensor2d(
        [
          [0, 3, 3],
          [6, 0, 3],
        ],
        [2, 3],
        'int32',
      )
      const w = tf.randomNormal([2, 3, 3], 0, 1, 'float32', 2)
      const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gatherRows(t, ids), w)))(table)
      const theirs = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), w)))(table)
      expect(gatherRows(table, ids).arraySync()).toEqual(tf.gather(table, ids).arraySync())
      const a = ours.arraySync() as number[][]
      const b = theirs.arraySync() as number[][]
      for (let i = 0; i < 7; i++) for (let j = 0; j < 3; j++) expect(a[i][j]).toBeCloseTo(b[i][j], 5)
      // row 3 appears three times: its gradient is the sum of three slices of w
      const wv = w.arraySync() as number[][][]
      expect(a[3][1]).toBeCloseTo(wv[0][1][1] + wv[0][2][1] + wv[1][2][1], 5)
      expect(a[1]).toEqual([0, 0, 0])
    })
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('crossEntropy', () => {
  it('equals -mean log softmax at the targets, weighted when weights are given', () => {
    tf.tidy(() => {
      const logits = tf.tensor2d([
        [1, 2, 3],
        [0.5, -1, 2],
      ])
      const targets = tf.tensor1d([2, 0], 'int32')
      const lse = (r: number[]) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0))
      const l0 = lse([1, 2, 3]) - 3
      const l1 = lse([0.5, -1, 2]) - 0.5
      expect(crossEntropy(logits, targets).dataSync()[0]).toBeCloseTo((l0 + l1) / 2, 5)
      const w = tf.tensor1d([0, 1])
      expect(crossEntropy(logits, targets, w).dataSync()[0]).toBeCloseTo(l1, 5)
    })
  })
})
