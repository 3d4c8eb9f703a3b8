import { defineConfig } from 'tsup'

// nx loads generator factories with require(), so the generator ships as CommonJS.
export default defineConfig({
  entry: { method: 'src/method/generator.ts' },
  format: ['cjs'],
  clean: true,
  sourcemap: true,
  shims: true,
  target: 'node20',
})
