import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ADDON_PATH, type BuildRecord, lastBuild, type NativeStatus } from './addon.js'

const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url))

/** One thing the addon's build needs, as scripts/build-addon.cjs checks it. */
export interface BuildCheck {
  what: string
  ok: boolean
  found?: string
  /** What to install when it is missing. */
  missing?: string
}

/**
 * What the build needs and whether this machine has it, from the same script that builds the
 * addon at install (shipped in the package as scripts/build-addon.cjs, plain CommonJS so it
 * runs before anything is compiled).
 */
export function buildPrerequisites(): BuildCheck[] {
  const script = join(here, '..', 'scripts', 'build-addon.cjs')
  const mod = createRequire(join(here, 'index.js'))(script) as {
    checkPrerequisites(): { checks: BuildCheck[] }
  }
  return mod.checkPrerequisites().checks
}

export interface NativeDiagnosis {
  addonPath: string
  built: boolean
  /** The last build attempt (install or `npx @sprout/backend-native build`), if any was recorded. */
  lastBuild: BuildRecord | null
  /** Registering the backend: ok with the OpenBLAS configuration, or why not and the fix. */
  status: NativeStatus
  prerequisites: BuildCheck[]
  threads: {
    /** What the backend uses: OPENBLAS_NUM_THREADS, else the machine's cores. */
    used: number
    cores: number
    OPENBLAS_NUM_THREADS: string | null
    OMP_NUM_THREADS: string | null
  }
}

/** Everything `sprout doctor` reports about this backend, given the outcome of registering it. */
export function diagnoseNative(status: NativeStatus): NativeDiagnosis {
  const cores = availableParallelism()
  return {
    addonPath: ADDON_PATH,
    built: existsSync(ADDON_PATH),
    lastBuild: lastBuild(),
    status,
    prerequisites: buildPrerequisites(),
    threads: {
      used: status.ok ? status.threads : Number(process.env.OPENBLAS_NUM_THREADS) || cores,
      cores,
      OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? null,
      OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? null,
    },
  }
}
