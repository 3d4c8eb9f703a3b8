import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BUILD_COMMAND, loadAddon } from './addon.js'

const nowhere = join(tmpdir(), 'no-such-dir', 'sprout_native.node')

describe('loadAddon', () => {
  it('explains a missing addon in one line and names the build command', () => {
    const r = loadAddon(nowhere, null)
    expect(r).toEqual({
      ok: false,
      kind: 'not-built',
      reason: 'the native addon is not built',
      fix: 'npx @sprout/backend-native build',
    })
  })

  it('says what the install was missing when the install step recorded it', () => {
    const missing = 'OpenBLAS headers: no cblas.h under SPROUT_OPENBLAS_DIR=/nope in /nope/include'
    const r = loadAddon(nowhere, { ok: false, missing })
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.kind).toBe('missing-blas')
      expect(r.reason).toBe(`the native addon is not built: when installed, missing ${missing}`)
      expect(r.fix).toBe(`install OpenBLAS (Debian: apt-get install libopenblas-dev), then ${BUILD_COMMAND}`)
    }
  })

  it('explains an addon that fails to load in one line, with the rebuild command', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sprout-native-')), 'sprout_native.node')
    writeFileSync(path, 'not a shared object')
    const r = loadAddon(path, null)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.kind).toBe('load-failed')
      expect(r.reason).toMatch(/^the native addon failed to load \(.*\)$/)
      expect(r.reason).not.toMatch(/\n/)
      expect(r.fix).toBe(`rebuild it for this Node: ${BUILD_COMMAND}`)
    }
  })
})
