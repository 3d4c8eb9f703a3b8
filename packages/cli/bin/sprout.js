#!/usr/bin/env node
// The `sprout` command. Committed (not built) so npm links it at install time, before the
// workspace is built: npm skips a bin whose file does not exist yet. It runs the built CLI.
import { existsSync } from 'node:fs'

const built = new URL('../dist/bin.js', import.meta.url)
if (existsSync(built)) await import(built.href)
else {
  process.stderr.write(
    'sprout: @sprout/cli is not built yet (no dist/bin.js); in the Sprout repository run `npm run build` (or `npm run setup`)\n',
  )
  process.exitCode = 1
}
