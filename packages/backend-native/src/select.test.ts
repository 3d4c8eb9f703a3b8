import { selectBackend, skipUnless } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { loadAddon } from './addon.js'
import { sproutBackend } from './index.js'

const missing = skipUnless(loadAddon().ok, 'the native addon over OpenBLAS (npm run setup builds it)')

// Core knows no backend by name: this package hands itself to selectBackend as a candidate.
describe.skipIf(missing)('@sprout/core selectBackend with the addon built', () => {
  const previous = tf.getBackend()
  afterAll(async () => {
    if (previous) await tf.setBackend(previous)
  })

  it('prefers native over cpu and runs kernels on it', async () => {
    const saved = process.env.SPROUT_BACKEND
    delete process.env.SPROUT_BACKEND
    try {
      const choice = await selectBackend(undefined, { candidates: [sproutBackend] })
      expect(choice.name).toBe('native')
      expect(choice.detail).toMatch(/^@sprout\/backend-native: OpenBLAS/)
      expect(tf.getBackend()).toBe('native')
      const y = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 4])).dataSync())
      expect(Array.from(y)).toEqual(new Array(8).fill(3))
      const forced = await selectBackend('native', { candidates: [sproutBackend] })
      expect(forced.name).toBe('native')
    } finally {
      if (saved !== undefined) process.env.SPROUT_BACKEND = saved
    }
  })
})
