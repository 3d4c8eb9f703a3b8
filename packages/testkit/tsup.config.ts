import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.preset'

// ESM only: vitest cannot be require()d, so a CommonJS build of the suite could never run.
export default defineConfig(packageBuild({ format: ['esm'] }))
