import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { type BackendCandidate, loadBackendModule } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import type { Io } from '../io.js'
import { runDoctor } from './doctor.js'

const LOAD_ERROR = 'libcudnn.so.8: cannot open shared object file: No such file or directory'
// A tfjs-node-gpu that is installed but cannot load its CUDA libraries, and one that is absent.
const broken: BackendCandidate = {
  name: 'tensorflow',
  module: '@tensorflow/tfjs-node-gpu',
  load: () =>
    loadBackendModule(
      '@tensorflow/tfjs-node-gpu',
      () => Promise.reject(new Error(LOAD_ERROR)),
      () => ({ ok: true, detail: 'never' }),
    ),
}
const absent: BackendCandidate = {
  name: 'tensorflow',
  module: '@sprout/absent-backend-xyz',
  load: () =>
    loadBackendModule(
      '@sprout/absent-backend-xyz',
      () => import(/* @vite-ignore */ ['@sprout', 'absent-backend-xyz'].join('/')),
      () => ({ ok: true, detail: 'never' }),
    ),
}

function capture(): Io & { lines: string[] } {
  const lines: string[] = []
  return { lines, out: (l) => lines.push(l), err: (l) => lines.push(`stderr: ${l}`) }
}

afterAll(async () => {
  await tf.setBackend('cpu')
})

describe('sprout doctor', () => {
  it('reports the pick, why each faster backend was passed over, the native build, threads and Node', async () => {
    const io = capture()
    const report = await runDoctor({ json: true }, [broken, absent], undefined, io)
    expect(io.lines).toHaveLength(1)
    expect(JSON.parse(io.lines[0]!)).toEqual(JSON.parse(JSON.stringify(report)))
    expect(report.backend).toMatchObject({ name: 'cpu' })
    expect(report.passedOver).toEqual([
      {
        name: 'tensorflow',
        module: '@tensorflow/tfjs-node-gpu',
        kind: 'failed',
        reason: `@tensorflow/tfjs-node-gpu failed to load: ${LOAD_ERROR}`,
      },
      {
        name: 'tensorflow',
        module: '@sprout/absent-backend-xyz',
        kind: 'missing',
        reason: '@sprout/absent-backend-xyz is not installed',
      },
    ])
    expect(report.node).toMatchObject({
      version: process.version,
      platform: `${process.platform}-${process.arch}`,
    })
    expect(report.tfjs).toBe(tf.version.tfjs)
    if ('installed' in report.native) throw new Error('@sprout/backend-native is a dependency of the CLI')
    expect(report.native.built).toBe(existsSync(report.native.addonPath))
    expect(report.native.status.ok).toBe(report.native.built)
    expect(report.native.threads.cores).toBe(availableParallelism())
    const blas = report.native.prerequisites.find((c) => c.what === 'OpenBLAS headers (cblas.h)')!
    if (blas.ok) expect(existsSync(blas.found!)).toBe(true)
    else expect(blas.missing).toMatch(/no cblas\.h/)
  })

  it('without OpenBLAS where the build looks, says what is missing and how to install it', async () => {
    const saved = process.env.SPROUT_OPENBLAS_DIR
    process.env.SPROUT_OPENBLAS_DIR = '/nonexistent/openblas'
    try {
      const io = capture()
      await runDoctor({}, [broken], undefined, io)
      const text = io.lines.join('\n')
      expect(text).toMatch(
        /^backend: cpu: pure JavaScript, slow: @tensorflow\/tfjs-node-gpu failed to load: libcudnn/m,
      )
      expect(text).toContain(
        `passed over tensorflow from @tensorflow/tfjs-node-gpu: @tensorflow/tfjs-node-gpu failed to load: ${LOAD_ERROR}`,
      )
      expect(text).toMatch(
        /MISSING OpenBLAS headers \(cblas\.h\): OpenBLAS headers: no cblas\.h under SPROUT_OPENBLAS_DIR=\/nonexistent\/openblas .*apt-get install libopenblas-dev/,
      )
      expect(text).toMatch(/^node v\d+\.\d+\.\d+ \(/m)
      expect(text).toMatch(/threads: \d+ of \d+ cores \(OPENBLAS_NUM_THREADS /)
      expect(io.lines.some((l) => l.startsWith('stderr:'))).toBe(false)
    } finally {
      if (saved === undefined) delete process.env.SPROUT_OPENBLAS_DIR
      else process.env.SPROUT_OPENBLAS_DIR = saved
    }
  })

  it('a forced backend that is unavailable is reported, not thrown', async () => {
    const io = capture()
    const report = await runDoctor({ json: true }, [broken], 'tensorflow', io)
    expect(report.backend).toEqual({
      name: null,
      error: `backend "tensorflow" is unavailable: @tensorflow/tfjs-node-gpu failed to load: ${LOAD_ERROR}`,
    })
    expect(report.forced).toBe('tensorflow')
  })
})
