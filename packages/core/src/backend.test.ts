import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BackendCandidate, describeBackend, loadBackendModule, selectBackend } from './backend.js'
import { isSproutError } from './errors.js'

// Fake backend packages on disk: one that throws on import the way a tfjs-node build without its
// CUDA libraries does, one whose own dependency is missing, one that loads and registers a tfjs
// backend (a cpu backend under another name).
let dir: string
let brokenUrl: string
let missingDepUrl: string
let workingUrl: string
const CUDA_ERROR = 'libcudart.so.11.0: cannot open shared object file: No such file or directory'

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sprout-backend-'))
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text)
    return pathToFileURL(join(dir, name)).href
  }
  brokenUrl = write('broken.mjs', `throw new Error(${JSON.stringify(CUDA_ERROR)})\n`)
  missingDepUrl = write('missing-dep.mjs', `import '@sprout/no-such-dependency-xyz'\n`)
  workingUrl = write('working.mjs', 'export const sproutBackend = { name: "fake-fast" }\n')
})
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  if (tf.findBackend('fake-fast')) tf.removeBackend('fake-fast')
  await tf.setBackend('cpu')
})

const brokenTfjsNode: BackendCandidate = {
  name: 'tensorflow',
  module: '@tensorflow/tfjs-node-gpu',
  load: () =>
    loadBackendModule(
      '@tensorflow/tfjs-node-gpu',
      () => import(brokenUrl),
      () => ({ ok: true, detail: 'x' }),
    ),
}
const absentTfjsNode: BackendCandidate = {
  name: 'tensorflow',
  module: '@sprout/not-installed-xyz',
  load: () =>
    loadBackendModule(
      '@sprout/not-installed-xyz',
      () => import(/* @vite-ignore */ ['@sprout', 'not-installed-xyz'].join('/')),
      () => ({ ok: true, detail: 'x' }),
    ),
}
let registrations = 0
const working: BackendCandidate = {
  name: 'fake-fast',
  module: 'fake-fast-package',
  load: () =>
    loadBackendModule(
      'fake-fast-package',
      () => import(workingUrl),
      (mod: { sproutBackend: { name: string } }) => {
        if (!tf.findBackend(mod.sproutBackend.name)) {
          registrations++
          const Cpu = tf.findBackend('cpu')!.constructor as new () => tf.KernelBackend
          tf.registerBackend(mod.sproutBackend.name, () => Object.assign(new Cpu(), { firstUse: false }))
          for (const k of tf.getKernelsForBackend('cpu'))
            tf.registerKernel({ ...k, backendName: mod.sproutBackend.name })
        }
        return { ok: true, detail: 'the fake fast backend' }
      },
    ),
}
const unbuilt: BackendCandidate = {
  name: 'native',
  module: 'fake-native',
  load: async () => ({
    ok: false,
    kind: 'failed',
    reason: 'the addon is not built (OpenBLAS headers were missing at install)',
    fix: 'npx @sprout/backend-native build',
  }),
}

describe('selectBackend over candidates it is handed', () => {
  it('passes over a package that fails to load, names it with its error, and takes the next one', async () => {
    const choice = await selectBackend(undefined, { candidates: [brokenTfjsNode, absentTfjsNode, working] })
    expect(choice.name).toBe('fake-fast')
    expect(tf.getBackend()).toBe('fake-fast')
    expect(choice.passedOver.map((p) => p.kind)).toEqual(['failed', 'missing'])
    const line = describeBackend(choice)
    expect(line).toContain(
      `@tensorflow/tfjs-node-gpu failed to load: Error: ${CUDA_ERROR}`.replace('Error: ', ''),
    )
    // A package that is simply not installed is not news in the one-line message.
    expect(line).not.toContain('not-installed-xyz')
    expect(choice.passedOver[1]!.reason).toBe('@sprout/not-installed-xyz is not installed')
    const sum = tf.tidy(() => tf.add(tf.ones([2]), tf.ones([2])).dataSync())
    expect(Array.from(sum)).toEqual([2, 2])
  })

  it('calls a missing dependency of an installed package a failure, with its error', async () => {
    const r = await loadBackendModule(
      '@tensorflow/tfjs-node',
      () => import(missingDepUrl),
      () => ({
        ok: true,
        detail: 'x',
      }),
    )
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.kind).toBe('failed')
      expect(r.reason).toMatch(/^@tensorflow\/tfjs-node failed to load: .*no-such-dependency-xyz/)
    }
  })

  it('falls back to cpu with every reason and its fix when nothing faster works', async () => {
    const choice = await selectBackend(undefined, { candidates: [absentTfjsNode, unbuilt] })
    expect(choice.name).toBe('cpu')
    expect(tf.getBackend()).toBe('cpu')
    expect(choice.detail).toBe(
      'pure JavaScript, slow: the addon is not built (OpenBLAS headers were missing at install); to fix: npx @sprout/backend-native build',
    )
  })

  it('forces a backend by name, and refuses an unavailable or unknown one with a reason', async () => {
    expect((await selectBackend('cpu', { candidates: [working] })).name).toBe('cpu')
    expect((await selectBackend('fake-fast', { candidates: [unbuilt, working] })).name).toBe('fake-fast')
    expect(registrations).toBe(1)
    const unavailable = await selectBackend('native', { candidates: [unbuilt, working] }).catch((e) => e)
    expect(isSproutError(unavailable) && unavailable.code).toBe('BACKEND_UNAVAILABLE')
    expect(unavailable.message).toBe(
      'backend "native" is unavailable: the addon is not built (OpenBLAS headers were missing at install); to fix: npx @sprout/backend-native build',
    )
    const unknown = await selectBackend('gpu', { candidates: [working] }).catch((e) => e)
    expect(unknown.message).toMatch(/^unknown backend "gpu"; choose fake-fast, cpu/)
  })

  it('takes SPROUT_BACKEND when no name is passed', async () => {
    const saved = process.env.SPROUT_BACKEND
    process.env.SPROUT_BACKEND = 'cpu'
    try {
      expect((await selectBackend(undefined, { candidates: [working] })).name).toBe('cpu')
    } finally {
      if (saved === undefined) delete process.env.SPROUT_BACKEND
      else process.env.SPROUT_BACKEND = saved
    }
  })
})
