import { Worker } from 'node:worker_threads'
import { skipUnless } from '@sprout/core'
import { describe, expect, it } from 'vitest'
import { ADDON_PATH, loadAddon } from './addon.js'
import { rand } from './kernels.testutil.js'

const load = loadAddon()
const missing = skipUnless(load.ok, 'the native addon over OpenBLAS (npm run setup builds it)')

// Above two threads' worth of kGrain (2^17) elements, so every call goes through the thread pool.
const N = 300_000

/** Largest relative error of exp computed by the addon against Math.exp. */
function expError(x: Float32Array, y: Float32Array): number {
  let worst = 0
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(y[i] / Math.exp(x[i]) - 1))
  return worst
}

describe.skipIf(missing)('the persistent thread pool', () => {
  it('runs hundreds of threaded calls in a row with every chunk computed', () => {
    const addon = load.ok ? load.addon : null
    addon!.setThreads(2)
    const x = rand(N, 7, -5, 5)
    for (let round = 0; round < 300; round++) {
      const y = new Float32Array(N).fill(Number.NaN)
      addon!.unary(0, x, y)
      // A chunk the pool skipped would leave NaN; a wrong one would miss exp.
      if (round % 50 === 0 || round === 299) expect(expError(x, y)).toBeLessThan(2e-6)
    }
  })

  it('stays correct when two JS threads use the addon at once (the second runs serially)', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads')
      const addon = require(workerData.path)
      addon.setThreads(2)
      const n = workerData.n
      const x = new Float32Array(n)
      for (let i = 0; i < n; i++) x[i] = ((i * 7919) % 1000) / 100 - 5
      let worst = 0
      for (let round = 0; round < 100; round++) {
        const y = new Float32Array(n).fill(NaN)
        addon.unary(0, x, y)
        for (let i = 0; i < n; i += 97) {
          const e = Math.abs(y[i] / Math.exp(x[i]) - 1)
          worst = Math.max(worst, Number.isNaN(e) ? 1 : e)
        }
      }
      parentPort.postMessage(worst)
    `
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { path: ADDON_PATH, n: N } })
        w.once('message', resolve)
        w.once('error', reject)
      })
    const errors = await Promise.all([run(), run(), run()])
    for (const e of errors) expect(e).toBeLessThan(2e-6)
  })
})
