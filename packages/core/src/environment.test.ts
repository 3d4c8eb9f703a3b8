import { afterEach, describe, expect, it, vi } from 'vitest'
import { REQUIRE_ALL_ENV, skipUnless } from './environment.js'

describe('skipUnless', () => {
  const saved = process.env[REQUIRE_ALL_ENV]
  afterEach(() => {
    if (saved === undefined) delete process.env[REQUIRE_ALL_ENV]
    else process.env[REQUIRE_ALL_ENV] = saved
    vi.restoreAllMocks()
  })

  it('runs a test whose requirement is available, whatever the switch says', () => {
    process.env[REQUIRE_ALL_ENV] = '1'
    expect(skipUnless(true, 'a tool')).toBe(false)
  })

  it('skips with a note naming the requirement when it is missing', () => {
    delete process.env[REQUIRE_ALL_ENV]
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    expect(skipUnless(false, 'python3 with torch')).toBe(true)
    expect(warn).toHaveBeenCalledWith('skipping a test that needs python3 with torch')
  })

  it(`fails instead of skipping under ${REQUIRE_ALL_ENV}=1 (what CI sets)`, () => {
    process.env[REQUIRE_ALL_ENV] = '1'
    expect(() => skipUnless(false, 'python3 with torch (apt-get install python3-torch)')).toThrow(
      'SPROUT_REQUIRE_ALL=1 but a test needs python3 with torch (apt-get install python3-torch), which is missing on this machine',
    )
  })
})
