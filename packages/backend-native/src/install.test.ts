import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { lastBuild, loadAddon } from './addon.js'

// The install step's failure paths, run on a copy of the script (it writes its record next to
// itself, in build/), with the environment pointing the build at what is missing.
const pkg = mkdtempSync(join(tmpdir(), 'sprout-native-install-'))
mkdirSync(join(pkg, 'scripts'))
copyFileSync(
  join(import.meta.dirname, '..', 'scripts', 'build-addon.cjs'),
  join(pkg, 'scripts', 'build-addon.cjs'),
)
afterAll(() => rmSync(pkg, { recursive: true, force: true }))

function run(mode: string, env: Record<string, string>) {
  return spawnSync(process.execPath, [join(pkg, 'scripts', 'build-addon.cjs'), mode], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  })
}

describe('scripts/build-addon.cjs', () => {
  it('without OpenBLAS: the install succeeds, says in one line what is missing and how to build later', () => {
    const r = run('install', { SPROUT_OPENBLAS_DIR: '/nonexistent/openblas' })
    expect(r.status).toBe(0)
    expect(r.stdout).toBe('')
    const lines = r.stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^@sprout\/backend-native: not built, Sprout will use the slower cpu backend: missing .*OpenBLAS headers: no cblas\.h under SPROUT_OPENBLAS_DIR=\/nonexistent\/openblas.*\. Build it later with: npx @sprout\/backend-native build$/,
    )
    expect(existsSync(join(pkg, 'build', 'Release', 'sprout_native.node'))).toBe(false)
    // What the install recorded is what the backend says when Sprout starts.
    const record = lastBuild(join(pkg, 'build', 'sprout-build.json'))
    expect(record?.ok).toBe(false)
    const load = loadAddon(join(pkg, 'build', 'Release', 'sprout_native.node'), record)
    expect(load.ok).toBe(false)
    if (!load.ok) {
      expect(load.kind).toBe('missing-blas')
      expect(load.reason).toContain('no cblas.h under SPROUT_OPENBLAS_DIR=/nonexistent/openblas')
    }
  })

  it('names a missing compiler', () => {
    const r = run('install', { CXX: '/nonexistent/g++' })
    expect(r.status).toBe(0)
    expect(r.stderr).toMatch(
      /missing a C\+\+17 compiler \(\/nonexistent\/g\+\+; Debian: apt-get install g\+\+\)/,
    )
  })

  it('the build command fails with exit 1 where the install step succeeds', () => {
    const r = run('build', { SPROUT_OPENBLAS_DIR: '/nonexistent/openblas' })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^@sprout\/backend-native: build failed: missing .*OpenBLAS headers/)
  })

  it('check lists every prerequisite as JSON; an unknown mode is a usage error', () => {
    const r = run('check', {})
    expect(r.status).toBe(0)
    const checks = JSON.parse(r.stdout) as { what: string; ok: boolean }[]
    expect(checks.map((c) => c.what)).toEqual([
      'platform',
      'Node.js headers',
      'C++ compiler',
      'make',
      'python3 (for node-gyp)',
      'node-gyp',
      'OpenBLAS headers (cblas.h)',
      'OpenBLAS library',
    ])
    expect(run('bogus', {}).status).toBe(2)
  })
})
