import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface NativeAddon {
  /** out[i] = op(a[i])·op(b[i]), row-major; a stride of 0 broadcasts that operand. */
  sgemmBatched(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
    strideA: number,
    strideB: number,
  ): void
  /** out = a ∘ b with broadcasting (op 0 add, 1 sub, 2 mul, 3 div); strides are 0 on broadcast axes. */
  binary(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    shape: Int32Array,
    stridesA: Int32Array,
    stridesB: Int32Array,
  ): void
  /** OpenBLAS worker threads. */
  setThreads(n: number): void
  /** OpenBLAS build configuration string. */
  blas: string
}

const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url))

/** Loads build/Release/sprout_native.node (built by `npm run build:addon`), or says why not. */
export function loadAddon(): { ok: true; addon: NativeAddon } | { ok: false; reason: string } {
  const path = join(here, '..', 'build', 'Release', 'sprout_native.node')
  if (!existsSync(path))
    return {
      ok: false,
      reason: 'the addon is not built (run `npm run setup`, which installs libopenblas-dev and builds it)',
    }
  try {
    return { ok: true, addon: createRequire(join(here, 'index.js'))(path) as NativeAddon }
  } catch (e) {
    return {
      ok: false,
      reason: `the addon failed to load (${(e as Error).message.split('\n')[0]}); install libopenblas0 and rerun \`npm run setup\``,
    }
  }
}
