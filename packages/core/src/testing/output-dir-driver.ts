// Writes output folder argv[2] with writeOutputDir in a child process, so output-dir.test.ts can
// SIGKILL it at each step (SPROUT_TEST_HOOK). A complete output holds files a and b, both = argv[3].

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeOutputDir } from '../output-dir.js'

const [dir, tag] = process.argv.slice(2)
await writeOutputDir(
  dir,
  (tmp) => {
    writeFileSync(join(tmp, 'a'), tag)
    writeFileSync(join(tmp, 'b'), tag)
  },
  (line) => process.stderr.write(`${line}\n`),
)
