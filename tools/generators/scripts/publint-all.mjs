// Runs publint (strict) over every publishable workspace package; exits 1 if any reports an
// error or warning. Packages must be built first (publint checks the files that would be packed).
import { publint } from 'publint'
import { formatMessage } from 'publint/utils'
import { publishablePackages } from './workspace-packages.mjs'

let failed = 0
for (const { dir, pkg } of publishablePackages()) {
  const { messages } = await publint({ pkgDir: dir, strict: true, level: 'suggestion' })
  const blocking = messages.filter((m) => m.type === 'error' || m.type === 'warning')
  console.log(`${blocking.length === 0 ? 'ok  ' : 'FAIL'} ${pkg.name}`)
  for (const m of messages) console.log(`     ${m.type}: ${formatMessage(m, pkg)}`)
  if (blocking.length > 0) failed++
}
if (failed > 0) {
  console.error(`publint: ${failed} package(s) have errors or warnings`)
  process.exit(1)
}
