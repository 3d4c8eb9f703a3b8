import tQuantile from '@stdlib/stats-base-dists-t-quantile'

/** A figure measured once per seed, with its spread. */
export interface SeedStats {
  /** Mean over the seeds that produced a value; null when any seed has none (e.g. "not reached"). */
  mean: number | null
  /** Sample standard deviation (n − 1); null below two values. */
  std: number | null
  /** 95 % interval for the mean: mean ± t(0.975, n − 1) · std / √n; null below two values. */
  ci95: [number, number] | null
  /** One value per seed, in seed order; null where the seed produced none. */
  perSeed: (number | null)[]
}

/**
 * Mean, spread and a t-interval over seeds. A seed without a value (a method that never reached
 * the target) makes the mean undefined rather than silently averaging the seeds that did.
 */
export function seedStats(perSeed: (number | null)[]): SeedStats {
  const values = perSeed.filter((v): v is number => v !== null && Number.isFinite(v))
  if (values.length === 0 || values.length < perSeed.length)
    return { mean: null, std: null, ci95: null, perSeed }
  const n = values.length
  const mean = values.reduce((a, b) => a + b, 0) / n
  if (n < 2) return { mean, std: null, ci95: null, perSeed }
  const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1))
  const half = tQuantile(0.975, n - 1) * (std / Math.sqrt(n))
  return { mean, std, ci95: [mean - half, mean + half], perSeed }
}

/** What a 95 % interval says about a quantity's sign. */
export type Verdict = 'positive' | 'negative' | 'indistinguishable' | 'undetermined'

export function verdict(s: SeedStats): Verdict {
  if (s.ci95 === null) return 'undetermined'
  if (s.ci95[0] > 0) return 'positive'
  if (s.ci95[1] < 0) return 'negative'
  return 'indistinguishable'
}

/** Per-seed differences a − b (paired by seed: same data order and initialisation seed). */
export function pairedDifference(a: (number | null)[], b: (number | null)[]): SeedStats {
  return seedStats(a.map((x, i) => (x === null || b[i] === null || b[i] === undefined ? null : x - b[i]!)))
}
