import { SeededRandom } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { contractRing, ringFlops, ringParameters } from './ring.js'

const rng = new SeededRandom(3)
const rand = (shape: number[]) => tf.tensor(rng.normals(shape.reduce((a, b) => a * b, 1)), shape)

/** Brute force: M2[b2,i2,o2,l2] = Σ Tr(S_B S_I S_O S_L) M1, with explicit R×R matrix products. */
function bruteForce(m1: tf.Tensor, B: tf.Tensor, I: tf.Tensor, O: tf.Tensor, L: tf.Tensor): Float64Array {
  const [, B1, B2] = B.shape as number[]
  const [, I1, I2] = I.shape as number[]
  const [, O1, O2] = O.shape as number[]
  const [, L1, L2] = L.shape as number[]
  const R = B.shape[0]!
  const m = m1.dataSync()
  const [b, i, o, l] = [B, I, O, L].map((t) => t.dataSync())
  const cores = new Map([
    [b, B],
    [i, I],
    [o, O],
    [l, L],
  ])
  // the [r, s] bond matrix of core entry (x1, x2)
  const slice = (data: ArrayLike<number>, X1: number, X2: number, x1: number, x2: number) => {
    const [Rr, , , Rs] = cores.get(data as Float32Array)!.shape as number[]
    const out: number[][] = []
    for (let r = 0; r < Rr; r++) {
      out.push([])
      for (let s = 0; s < Rs; s++) out[r].push(data[((r * X1 + x1) * X2 + x2) * Rs + s])
    }
    return out
  }
  const mul = (a: number[][], c: number[][]) =>
    a.map((row) => c[0].map((_, j) => row.reduce((acc, v, k) => acc + v * c[k][j], 0)))
  const out = new Float64Array(B2 * I2 * O2 * L2)
  for (let b2 = 0; b2 < B2; b2++)
    for (let i2 = 0; i2 < I2; i2++)
      for (let o2 = 0; o2 < O2; o2++)
        for (let l2 = 0; l2 < L2; l2++) {
          let acc = 0
          for (let b1 = 0; b1 < B1; b1++)
            for (let i1 = 0; i1 < I1; i1++)
              for (let o1 = 0; o1 < O1; o1++)
                for (let l1 = 0; l1 < L1; l1++) {
                  const p = mul(
                    mul(mul(slice(b, B1, B2, b1, b2), slice(i, I1, I2, i1, i2)), slice(o, O1, O2, o1, o2)),
                    slice(l, L1, L2, l1, l2),
                  )
                  let tr = 0
                  for (let r = 0; r < R; r++) tr += p[r][r]
                  acc += tr * m[((b1 * I1 + i1) * O1 + o1) * L1 + l1]
                }
          out[((b2 * I2 + i2) * O2 + o2) * L2 + l2] = acc
        }
  return out
}

describe('tensor-ring contraction', () => {
  it('matches the trace formula computed entry by entry (rank 2)', () => {
    const before = tf.memory().numTensors
    const R = 2
    const m1 = rand([3, 2, 3, 2])
    const cores = {
      B: rand([R, 3, 4, R]),
      I: rand([R, 2, 3, R]),
      O: rand([R, 3, 4, R]),
      L: rand([R, 2, 3, R]),
    }
    const got = tf.tidy(() => contractRing(m1, cores))
    expect(got.shape).toEqual([4, 3, 4, 3])
    const want = bruteForce(m1, cores.B, cores.I, cores.O, cores.L)
    const g = got.dataSync()
    for (let k = 0; k < want.length; k++)
      expect(Math.abs(g[k] - want[k])).toBeLessThan(1e-3 * (1 + Math.abs(want[k])))
    tf.dispose([m1, got, ...Object.values(cores)])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('matches the trace formula with a different rank on each bond', () => {
    // bonds a (L→B) 2, b (B→I) 3, c (I→O) 1, d (O→L) 2
    const m1 = rand([3, 2, 3, 2])
    const cores = {
      B: rand([2, 3, 4, 3]),
      I: rand([3, 2, 3, 1]),
      O: rand([1, 3, 4, 2]),
      L: rand([2, 2, 3, 2]),
    }
    const got = tf.tidy(() => contractRing(m1, cores))
    const want = bruteForce(m1, cores.B, cores.I, cores.O, cores.L)
    const g = got.dataSync()
    for (let k = 0; k < want.length; k++)
      expect(Math.abs(g[k] - want[k])).toBeLessThan(1e-3 * (1 + Math.abs(want[k])))
    tf.dispose([m1, got, ...Object.values(cores)])
  })

  it('rank 1 is the Kronecker product S_B ⊗ S_I ⊗ S_O ⊗ S_L applied to vec(M1)', () => {
    const dims = [
      [3, 4],
      [2, 3],
      [2, 4],
      [1, 2],
    ] // (B1,B2), (I1,I2), (O1,O2), (L1,L2)
    const m1 = rand(dims.map((d) => d[0]))
    const mats = dims.map(([a, b]) => rand([a, b]))
    const cores = {
      B: mats[0].reshape([1, 3, 4, 1]),
      I: mats[1].reshape([1, 2, 3, 1]),
      O: mats[2].reshape([1, 2, 4, 1]),
      L: mats[3].reshape([1, 1, 2, 1]),
    }
    // explicit Kronecker matrix K[(b2,i2,o2,l2), (b1,i1,o1,l1)] = Π S_X[x1, x2]
    const ms = mats.map((t) => t.dataSync())
    const n1 = dims.reduce((a, d) => a * d[0], 1)
    const n2 = dims.reduce((a, d) => a * d[1], 1)
    const K = new Float64Array(n1 * n2)
    const unravel = (k: number, sizes: number[]) => {
      const out: number[] = []
      for (let x = sizes.length - 1; x >= 0; x--) {
        out[x] = k % sizes[x]
        k = Math.floor(k / sizes[x])
      }
      return out
    }
    for (let r = 0; r < n2; r++)
      for (let c = 0; c < n1; c++) {
        const t = unravel(
          r,
          dims.map((d) => d[1]),
        )
        const s = unravel(
          c,
          dims.map((d) => d[0]),
        )
        K[r * n1 + c] = dims.reduce((acc, d, x) => acc * ms[x][s[x] * d[1] + t[x]], 1)
      }
    const v = m1.dataSync()
    const got = tf.tidy(() => contractRing(m1, cores))
    const g = got.dataSync()
    for (let r = 0; r < n2; r++) {
      let want = 0
      for (let c = 0; c < n1; c++) want += K[r * n1 + c] * v[c]
      expect(Math.abs(g[r] - want)).toBeLessThan(1e-4 * (1 + Math.abs(want)))
    }
    tf.dispose([m1, got, ...mats, ...Object.values(cores)])
  })

  it('counts parameters and FLOPs by hand', () => {
    const d = { B1: 12, B2: 12, I1: 128, I2: 256, O1: 128, O2: 256, L1: 2, L2: 4 }
    expect(ringParameters(d, 1)).toBe(144 + 2 * 32768 + 8)
    expect(ringParameters(d, 4)).toBe(16 * (144 + 2 * 32768 + 8))
    // rank 1: 2·B1·O1·L1·I1·I2 + 2·B1·L1·I2·O1·O2 + 2·L1·L2·B1·B2 + 2·I2·O2·B1·L1·B2·L2
    const r1 =
      2 * 12 * 128 * 2 * 128 * 256 +
      2 * 12 * 2 * 256 * 128 * 256 +
      2 * 2 * 4 * 12 * 12 +
      2 * 256 * 256 * 24 * 48
    expect(ringFlops(d, 1).forward).toBe(r1)
    // backward: the first product has a constant operand (the source tensor): one gradient; the rest two
    const first = 2 * 12 * 128 * 2 * 128 * 256
    expect(ringFlops(d, 1).gradient).toBe(first + 2 * (r1 - first))
    // bond ranks [a, b, c, d] = [4, 4, 1, 4]: the I–O bond at rank 1 removes a factor 4 from the dominant term
    expect(ringParameters(d, [4, 4, 1, 4])).toBe(4 * 144 * 4 + 4 * 32768 * 1 + 1 * 32768 * 4 + 4 * 8 * 4)
    const mixed =
      2 * 12 * 128 * 2 * 128 * 4 * 256 * 1 +
      2 * 12 * 2 * 4 * 256 * 128 * 1 * 256 * 4 +
      2 * 4 * 2 * 4 * 4 * 12 * 12 * 4 +
      2 * 256 * 256 * 12 * 2 * 4 * 4 * 12 * 4
    expect(ringFlops(d, [4, 4, 1, 4]).forward).toBe(mixed)
  })
})
