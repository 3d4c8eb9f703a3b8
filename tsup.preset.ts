import type { Options } from 'tsup'

/**
 * The build every Sprout package shares: `src/index.ts` to ESM and CommonJS, with type
 * declarations and source maps, for Node 20. A package's tsup.config.ts passes only what
 * differs from this (more entries, ESM only, ...).
 */
export function packageBuild(overrides: Options = {}): Options {
  return {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    ...overrides,
  }
}
