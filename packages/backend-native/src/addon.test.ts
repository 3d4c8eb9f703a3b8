import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadAddon } from './addon.js'

describe('loadAddon', () => {
  it('explains a missing addon in one line that says how to build it', () => {
    const r = loadAddon(join(tmpdir(), 'no-such-dir', 'sprout_native.node'))
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.reason).toMatch(/npm run setup/)
      expect(r.reason).toMatch(/libopenblas-dev/)
      expect(r.reason).not.toMatch(/\n/)
    }
  })

  it('explains an addon that fails to load in one line', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sprout-native-')), 'sprout_native.node')
    writeFileSync(path, 'not a shared object')
    const r = loadAddon(path)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.reason).toMatch(/failed to load/)
      expect(r.reason).toMatch(/npm run setup/)
      expect(r.reason).not.toMatch(/\n/)
    }
  })
})
