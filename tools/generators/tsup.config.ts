import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.preset'

// nx loads generator factories with require(), so the generator ships as CommonJS, without types.
export default defineConfig(
  packageBuild({ entry: { method: 'src/method/generator.ts' }, format: ['cjs'], dts: false, shims: true }),
)
