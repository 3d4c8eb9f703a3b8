/** n seeded pseudo-random floats in [lo, hi) (a 32-bit LCG): the kernel tests' shared inputs. */
export function rand(n: number, seed: number, lo = -2, hi = 2): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return lo + ((hi - lo) * s) / 2 ** 32
  })
}
