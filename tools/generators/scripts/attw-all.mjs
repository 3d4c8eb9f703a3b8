// Runs `attw --pack` (are the types wrong?) over every publishable workspace package. Packages
// whose exports have no "require" condition are ESM only on purpose (vitest, the CLI) and are
// checked with the esm-only profile. Build first.
import { spawnSync } from 'node:child_process'
import { publishablePackages } from './workspace-packages.mjs'

const hasRequire = (exports) => JSON.stringify(exports ?? {}).includes('"require"')
let failed = 0
for (const { dir, pkg } of publishablePackages()) {
  const profile = hasRequire(pkg.exports) ? 'strict' : 'esm-only'
  const r = spawnSync('npx', ['attw', '--pack', '.', '--profile', profile, '--format', 'ascii'], {
    cwd: dir,
    encoding: 'utf8',
  })
  const ok = r.status === 0
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${pkg.name} (${profile})`)
  if (!ok) {
    console.log(r.stdout + r.stderr)
    failed++
  }
}
if (failed > 0) {
  console.error(`attw: ${failed} package(s) have type resolution problems`)
  process.exit(1)
}
