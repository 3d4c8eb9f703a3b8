// Runs publint (strict) over every non-private workspace package; exits 1 if any reports an
// error or warning. Packages must be built first (publint checks the files that would be packed).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { publint } from 'publint'
import { formatMessage } from 'publint/utils'

const root = resolve(import.meta.dirname, '../../..')
const workspaces = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces
const dirs = workspaces.flatMap((glob) => {
  const base = join(root, glob.replace(/\/\*$/, ''))
  return existsSync(base)
    ? readdirSync(base, { withFileTypes: true })
        .filter((d) => d.isDirectory() && existsSync(join(base, d.name, 'package.json')))
        .map((d) => join(base, d.name))
    : []
})

let failed = 0
for (const pkgDir of dirs) {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
  if (pkg.private) continue
  const { messages } = await publint({ pkgDir, strict: true, level: 'suggestion' })
  const blocking = messages.filter((m) => m.type === 'error' || m.type === 'warning')
  console.log(
    `${blocking.length === 0 ? 'ok  ' : 'FAIL'} ${pkg.name}${messages.length > 0 ? ` (${messages.length} message(s))` : ''}`,
  )
  for (const m of messages) console.log(`     ${m.type}: ${formatMessage(m, pkg)}`)
  if (blocking.length > 0) failed++
}
if (failed > 0) {
  console.error(`publint: ${failed} package(s) have errors or warnings`)
  process.exit(1)
}
