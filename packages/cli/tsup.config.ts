import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.preset'

// ESM only, with the `sprout` executable as a second entry; only the library entry has types.
export default defineConfig(
  packageBuild({ entry: ['src/index.ts', 'src/bin.ts'], format: ['esm'], dts: { entry: 'src/index.ts' } }),
)
