import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The switch CI sets so that no test is skipped for a missing tool, data set or build: the most
 * independent checks (PyTorch references, the real Fashion-MNIST, the native kernels against
 * cpu) would otherwise pass silently on a machine that lacks them.
 */
export const REQUIRE_ALL_ENV = 'SPROUT_REQUIRE_ALL'

/**
 * For `it.skipIf` / `describe.skipIf` around a test that needs something from the machine:
 * returns true (skip, with a note on stderr) when it is unavailable; under SPROUT_REQUIRE_ALL=1
 * throws instead, naming what is missing and how to get it.
 *
 * @example describe.skipIf(skipUnless(python !== null, 'python3 with torch (apt-get install python3-torch)'), ...)
 */
export function skipUnless(available: boolean, requirement: string): boolean {
  if (available) return false
  if (process.env[REQUIRE_ALL_ENV] === '1')
    throw new Error(`${REQUIRE_ALL_ENV}=1 but a test needs ${requirement}, which is missing on this machine`)
  console.warn(`skipping a test that needs ${requirement}`)
  return true
}

/**
 * Whether this process can mount a small tmpfs (root, and mount(8) allowed): tests of real
 * read-only and full file systems need one.
 */
export function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false
  const probe = mkdtempSync(join(tmpdir(), 'sprout-mnt-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' })
    execFileSync('umount', [probe], { stdio: 'ignore' })
    return true
  } catch {
    return false
  } finally {
    rmSync(probe, { recursive: true, force: true })
  }
}
