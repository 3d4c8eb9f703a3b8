import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { publishablePackages, root } from '../scripts/workspace-packages.mjs'

// What every published tarball must carry: the license text, where the code lives, which Node it
// needs, and internal dependencies as ranges changesets keeps up to date (never "*").
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const license = readFileSync(join(root, 'LICENSE'), 'utf8')
const packages = publishablePackages()
const versions = new Map(packages.map((p) => [p.pkg.name as string, p.pkg.version as string]))

/** `^x.y.z` accepts `version` (the only range form used inside the workspace). */
function caretAccepts(range: string, version: string): boolean {
  const m = range.match(/^\^(\d+)\.(\d+)\.(\d+)$/)
  if (!m) return false
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const [x, y, z] = version.split('.').map(Number) as [number, number, number]
  if (a > 0) return x === a && (y > b || (y === b && z >= c))
  return x === 0 && y === b && z >= c // ^0.y.z stays within 0.y
}

describe('release metadata of every published package', () => {
  it('the root LICENSE is the Apache-2.0 text the packages declare', () => {
    expect(license).toContain('Apache License\n                           Version 2.0, January 2004')
    expect(license).toContain('END OF TERMS AND CONDITIONS')
    expect(rootPkg.repository.url).toMatch(/^git\+https:\/\/github\.com\/[^/]+\/[^/]+\.git$/)
  })

  for (const { dir, pkg: manifest } of packages) {
    const pkg = manifest as Record<string, any>
    it(`${pkg.name}: license, repository, homepage, bugs, engines, internal ranges`, () => {
      const where = relative(root, dir)
      const web = rootPkg.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')
      expect(pkg.license).toBe('Apache-2.0')
      expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toBe(license)
      expect(pkg.files).toContain('LICENSE')
      expect(pkg.repository).toEqual({ type: 'git', url: rootPkg.repository.url, directory: where })
      expect(pkg.homepage).toBe(`${web}/tree/main/${where}#readme`)
      expect(pkg.bugs).toEqual({ url: `${web}/issues` })
      expect(pkg.engines?.node).toBe(rootPkg.engines.node)
      for (const field of ['dependencies', 'devDependencies', 'peerDependencies'])
        for (const [name, range] of Object.entries((pkg[field] ?? {}) as Record<string, string>))
          if (versions.has(name))
            expect(
              caretAccepts(range, versions.get(name)!),
              `${field} ${name}@${range} vs ${versions.get(name)}`,
            ).toBe(true)
    })
  }

  it('every tarball (npm pack) holds LICENSE, README.md and package.json, and what its package needs at install', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '--workspaces'], {
      cwd: root,
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(0)
    // --workspaces also packs private workspaces (the generators); only the published ones count.
    const packs = (JSON.parse(r.stdout) as { name: string; files: { path: string }[] }[]).filter((p) =>
      versions.has(p.name),
    )
    expect(packs.map((p) => p.name).sort()).toEqual([...versions.keys()].sort())
    for (const p of packs) {
      const files = p.files.map((f) => f.path)
      for (const f of ['LICENSE', 'README.md', 'package.json']) expect(files, `${p.name} ${f}`).toContain(f)
    }
    const files = (name: string) => packs.find((p) => p.name === name)!.files.map((f) => f.path)
    expect(files('@sprout/backend-native')).toEqual(
      expect.arrayContaining(['scripts/build-addon.cjs', 'binding.gyp', 'native/sprout_native.cc']),
    )
    expect(files('@sprout/cli')).toContain('bin/sprout.js')
  })
})
