import { publint } from 'publint'
import { formatMessage } from 'publint/utils'
import { describe, expect, it } from 'vitest'
import { publishablePackages } from '../scripts/workspace-packages.mjs'

// The fast form of `npm run publint` (which also packs each package): package.json against the
// files on disk. Needs built packages, as `npm test` does first.
describe('every published package passes publint (strict)', () => {
  const packages = publishablePackages()
  it('finds the published packages', () => {
    expect(packages.map((p) => p.pkg.name)).toContain('@sprout/core')
    expect(packages.every((p) => !p.pkg.private)).toBe(true)
  })
  for (const { dir, pkg } of packages)
    it(pkg.name, async () => {
      const { messages } = await publint({ pkgDir: dir, strict: true, pack: false })
      const problems = messages
        .filter((m) => m.type === 'error' || m.type === 'warning')
        .map((m) => `${m.type}: ${formatMessage(m, pkg)}`)
      expect(problems, 'build first (npm run build) if files are missing').toEqual([])
    })
})
