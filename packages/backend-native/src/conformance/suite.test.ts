import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { skipUnless } from '@sprout/core'
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../addon.js'
import { EXCLUSIONS } from './exclusions.js'
import type { SuiteSummary } from './run.js'

const here = dirname(fileURLToPath(import.meta.url))
const available = loadAddon().ok

describe.skipIf(skipUnless(available, 'the native addon over OpenBLAS (npm run setup builds it)'))(
  "tfjs-core's own test suite",
  () => {
    it('passes against the native backend (Jasmine, in a child process)', async () => {
      // A child process: the suite resets tfjs's engine and registers test kernels and backends,
      // which must not leak into this package's other tests.
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', join(here, 'run.ts')],
        {
          cwd: join(here, '..', '..'),
          maxBuffer: 64 * 2 ** 20,
        },
      ).catch((e: { stdout?: string; stderr?: string }) => ({
        stdout: `${e.stdout ?? ''}\n${e.stderr ?? ''}`,
      }))
      const line = stdout.split('\n').find((l) => l.startsWith('SUITE '))
      if (!line) throw new Error(`the suite printed no summary:\n${stdout.slice(-4000)}`)
      const summary = JSON.parse(line.slice('SUITE '.length)) as SuiteSummary
      expect(summary.failures.map((f) => `${f.name}: ${f.message}`)).toEqual([])
      // tfjs-core 4.22 has 4,230 specs for a synchronous backend in Node; fewer than 4,000 run
      // would mean test files silently failed to load.
      expect(summary.passed).toBeGreaterThan(4000)
      expect(summary.skipped).toBeLessThanOrEqual(5 + EXCLUSIONS.length)
    }, 600_000)
  },
)
