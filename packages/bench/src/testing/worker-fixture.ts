// A stand-in for the CLI in tests of --jobs: a worker re-runs the same compare call.
import lemon from '@sprout/lemon'
import stack from '@sprout/stack'
import { runBenchCompare } from '../compare.js'

const args = JSON.parse(process.argv[2])
runBenchCompare(args, [lemon, stack], {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}).catch((e: Error) => {
  process.stderr.write(`${e.message}\n`)
  process.exitCode = 1
})
