import type { ParamInfo, TransformerSpec } from '@sprout/core'
import { roleFactor, type WidthFactors } from './factors.js'

/** Normal samples for the symmetric noise (a SeededRandom). */
export interface NormalSource {
  normal(mean?: number, std?: number): number
}

/**
 * Tiles a 1-D or 2-D row-major array `reps` times along each axis (copy c of index i lands at
 * c·size + i, so head-major attention widths get whole cloned heads) and multiplies by `scale`.
 */
export function tile(src: Float32Array, shape: number[], reps: number[], scale = 1): Float32Array {
  if (shape.length === 1) {
    const n = shape[0]
    const out = new Float32Array(n * reps[0])
    for (let c = 0; c < reps[0]; c++)
      for (let i = 0; i < n; i++) out[c * n + i] = scale === 1 ? src[i] : src[i] * scale
    return out
  }
  const [r, k] = shape
  const [a, b] = reps
  const cols = k * b
  const out = new Float32Array(r * a * cols)
  for (let i = 0; i < r * a; i++) {
    const row = (i % r) * k
    const base = i * cols
    for (let j = 0; j < cols; j++) out[base + j] = src[row + (j % k)] * scale
  }
  return out
}

/**
 * HyperCloning's symmetric noise on a tiled weight [a·r, b·k] (a input copies): for every output
 * block and every pair of input copies (2p, 2p+1), a noise block N is added to copy 2p and
 * subtracted from copy 2p+1, so a tiled input x' = [x, ..., x] sees Σ N − N = 0 and the output is
 * unchanged. With an odd number of copies the last one stays clean. N's power is the block's mean
 * square over 10^(snrDb/10), measured on the drawn samples (so each block has exactly that SNR).
 */
export function addSymmetricNoise(
  w: Float32Array,
  shape: [number, number],
  copies: [number, number],
  snrDb: number,
  random: NormalSource,
): void {
  const [rows, cols] = shape
  const [a, b] = copies
  const r = rows / a
  const k = cols / b
  const ratio = 10 ** (snrDb / 10)
  const noise = new Float32Array(r * k)
  for (let ob = 0; ob < b; ob++)
    for (let p = 0; p + 1 < a; p += 2) {
      let signal = 0
      let power = 0
      for (let i = 0; i < r; i++)
        for (let j = 0; j < k; j++) {
          const v = w[(p * r + i) * cols + ob * k + j]
          signal += v * v
          const n = random.normal()
          noise[i * k + j] = n
          power += n * n
        }
      if (signal === 0 || power === 0) continue
      const s = Math.sqrt(signal / ratio / power)
      for (let i = 0; i < r; i++)
        for (let j = 0; j < k; j++) {
          const n = noise[i * k + j] * s
          w[(p * r + i) * cols + ob * k + j] += n
          w[((p + 1) * r + i) * cols + ob * k + j] -= n
        }
    }
}

/**
 * The parameter whose output feeds the tied output projection alone: with tied embeddings the
 * logits are h·Eᵀ, and tiled E makes them n·h·Eᵀ, so this norm's gamma (and beta) is divided by n
 * instead of the (shared) embedding. Pre-norm: the final norm; post-norm: the last layer's norm2;
 * masked-LM head: its norm.
 */
export function tiedOutputNorm(spec: TransformerSpec): string | null {
  if (!spec.tieEmbeddings || spec.family === 'vit') return null
  if (spec.mlmHead) return 'head.norm'
  return spec.normPlacement === 'pre' ? 'norm' : `layers.${spec.nLayers - 1}.norm2`
}

export interface CloneOptions {
  /** SNR in dB of the symmetric noise on weights whose input is cloned; absent: no noise. */
  noise?: number
}

/**
 * One target parameter from its source tensor. Every axis of a width role is tiled by its factor.
 * A linear weight [in, out] is divided by its input factor (the cloned input repeats x, so the sum
 * over the copies gives x·W back); embeddings, biases and norm parameters are tiled as they are
 * (a tiled vector keeps its mean and mean square, so LayerNorm and RMSNorm commute with cloning).
 * The norm feeding a tied output projection is divided by the residual factor.
 */
export function cloneParam(
  info: ParamInfo,
  sourceShape: number[],
  src: Float32Array,
  spec: TransformerSpec,
  f: WidthFactors,
  options: CloneOptions,
  random: NormalSource,
): Float32Array {
  const reps = info.axes.map((role) => roleFactor(role, f))
  const inputCopies = info.kind === 'weight' ? reps[0] : 1
  const tied = tiedOutputNorm(spec)
  const isTiedNorm = tied !== null && info.name.startsWith(`${tied}.`)
  const scale = (isTiedNorm ? 1 / f.residual : 1) / inputCopies
  const out = tile(src, sourceShape, reps, scale)
  if (options.noise !== undefined && info.kind === 'weight' && inputCopies > 1)
    addSymmetricNoise(out, info.shape as [number, number], reps as [number, number], options.noise, random)
  return out
}
