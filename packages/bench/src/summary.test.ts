import { describe, expect, it } from 'vitest'
import type { MethodRun } from './records.js'
import { pairedDifference, seedStats, verdict } from './stats.js'
import { summariseRuns } from './summary.js'
import { curveRun as run } from './testing/runs.testutil.js'

describe('seed statistics', () => {
  it('mean, sample std and a t-interval, by hand', () => {
    // std of 0.1, 0.2, 0.3 is 0.1; t(0.975, 2) = 4.302653 from a t-table; 4.302653 · 0.1 / √3 = 0.248414.
    const s = seedStats([0.1, 0.2, 0.3])
    expect(s.mean).toBeCloseTo(0.2, 12)
    expect(s.std).toBeCloseTo(0.1, 12)
    expect(s.ci95![0]).toBeCloseTo(0.2 - 0.248414, 5)
    expect(s.ci95![1]).toBeCloseTo(0.2 + 0.248414, 5)
    expect(verdict(s)).toBe('indistinguishable')
    // Two seeds: t(0.975, 1) = 12.706205; half-width 12.706205 · 0.0141421 / √2 = 0.127062.
    const two = seedStats([0.5, 0.52])
    expect(two.ci95![0]).toBeCloseTo(0.51 - 0.127062, 5)
    expect(verdict(two)).toBe('positive')
    expect(verdict(seedStats([-0.5, -0.52]))).toBe('negative')
  })
  it('one seed has no interval; a missing seed leaves the mean undefined rather than biased', () => {
    expect(seedStats([0.3])).toEqual({ mean: 0.3, std: null, ci95: null, perSeed: [0.3] })
    expect(verdict(seedStats([0.3]))).toBe('undetermined')
    expect(seedStats([0.3, null]).mean).toBeNull()
    expect(seedStats([0.3, null]).perSeed).toEqual([0.3, null])
  })
  it('paired differences are taken seed by seed', () => {
    const d = pairedDifference([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    expect(d.perSeed.map((x) => Number(x!.toFixed(12)))).toEqual([0.1, 0.1, 0.1])
    expect(d.std).toBeCloseTo(0, 12)
    expect(pairedDifference([0.5, null], [0.4, 0.3]).mean).toBeNull()
  })
})

describe('summariseRuns', () => {
  // Two seeds, two budgets, scratch swept over lr 1e-3 and 2e-3.
  const runs: MethodRun[] = [
    // lr 1e-3: final 3.0 / 3.2 at the full budget; 3.5 / 3.5 at half.
    run('scratch', 0, 1, [
      [0, 5],
      [50, 4],
      [100, 3],
    ]),
    run('scratch', 1, 1, [
      [0, 5],
      [50, 4],
      [100, 3.2],
    ]),
    run('scratch', 0, 0.5, [
      [0, 5],
      [50, 3.5],
    ]),
    run('scratch', 1, 0.5, [
      [0, 5],
      [50, 3.5],
    ]),
    // lr 2e-3: better at the full budget (mean 2.9 < 3.1), worse at half (3.7 > 3.5).
    run(
      'scratch',
      0,
      1,
      [
        [0, 5],
        [50, 3.9],
        [100, 2.9],
      ],
      { lr: 2e-3, lrMult: 2 },
    ),
    run(
      'scratch',
      1,
      1,
      [
        [0, 5],
        [50, 3.9],
        [100, 2.9],
      ],
      { lr: 2e-3, lrMult: 2 },
    ),
    run(
      'scratch',
      0,
      0.5,
      [
        [0, 5],
        [50, 3.7],
      ],
      { lr: 2e-3, lrMult: 2 },
    ),
    run(
      'scratch',
      1,
      0.5,
      [
        [0, 5],
        [50, 3.7],
      ],
      { lr: 2e-3, lrMult: 2 },
    ),
    // grown: reaches 2.9 at 40 FLOPs in both seeds (growth 20 included) at the full budget.
    run('fast', 0, 1, [
      [20, 3.3],
      [40, 2.9],
      [120, 2.5],
    ]),
    run('fast', 1, 1, [
      [20, 3.3],
      [30, 3.1],
      [50, 2.7],
      [120, 2.5],
    ]),
    run('fast', 0, 0.5, [
      [20, 3.3],
      [70, 3.0],
    ]),
    run('fast', 1, 0.5, [
      [20, 3.3],
      [70, 3.0],
    ]),
    // reaches in seed 0 only.
    run('slow', 0, 1, [
      [0, 4],
      [100, 2.9],
    ]),
    run('slow', 1, 1, [
      [0, 4],
      [100, 3.0],
    ]),
    run('slow', 0, 0.5, [
      [0, 4],
      [50, 3.5],
    ]),
    run('slow', 1, 0.5, [
      [0, 4],
      [50, 3.6],
    ]),
    run('moe', 0, 1, [[5, 2]], { variantTarget: { family: 'decoder' } as never }),
    run('moe', 1, 1, [[5, 2.2]], { variantTarget: { family: 'decoder' } as never }),
    {
      ...run('nope', 0, 1, [[0, 9]]),
      status: 'skipped',
      reason: 'cannot grow width',
      curve: [],
      finalValLoss: null,
    },
  ]
  const sources = [
    { steps: 10, flops: 30, seconds: 1, valLoss: 3.4 },
    { steps: 10, flops: 30, seconds: 1, valLoss: 3.5 },
  ]
  const r = summariseRuns({ runs, sources, seeds: 2, budgets: [1, 0.5], baseLr: 1e-3, lrSweep: [1, 2] })

  it('tunes scratch per budget by the mean final loss over seeds', () => {
    expect(r.budgets).toEqual([0.5, 1])
    expect(r.scratch.byBudget.map((b) => b.lrMult)).toEqual([1, 2])
    expect(r.scratch.chosenLr).toBe(2e-3)
    expect(r.scratch.byBudget[1].finalLoss.mean).toBeCloseTo(2.9)
    expect(r.scratch.lrSweep.map((e) => e.byBudget[1].finalLoss.mean)).toEqual(
      [3.1, 2.9].map((x) => expect.closeTo(x)),
    )
  })
  it('savings per seed in both accountings, against the chosen scratch', () => {
    const fast = r.methods.find((m) => m.method === 'fast')!
    // Full budget: scratch (lr 2e-3) reaches 2.9 at 100 FLOPs. Seed 0 reaches it at 40; seed 1
    // between 30 (3.1) and 50 (2.7): 40. Sunk source: 1 − 40/100; charged: 1 − (40 + 30)/100.
    expect(fast.savings.excludingSource.perSeed.map((x) => x!.toFixed(6))).toEqual(['0.600000', '0.600000'])
    expect(fast.savings.includingSource.perSeed.map((x) => x!.toFixed(6))).toEqual(['0.300000', '0.300000'])
    expect(fast.perSeed[1].flopsToTarget).toBeCloseTo(40)
    expect(fast.finalLoss.mean).toBe(2.5)
    expect(fast.growthFlops.mean).toBe(20)
    // Half budget: scratch (lr 1e-3) ends at 3.5 after 50 FLOPs; fast starts below it (3.3 at 20).
    const half = fast.byBudget.find((b) => b.budget === 0.5)!
    expect(half.flopsToTarget.perSeed).toEqual([20, 20])
    expect(half.savings.excludingSource.mean).toBeCloseTo(1 - 20 / 50)
    // Loss at scratch's total FLOPs (50): between (20, 3.3) and (70, 3.0): 3.12.
    expect(half.lossAtEqualFlops.mean).toBeCloseTo(3.12)
  })
  it('a seed that never reaches the target leaves the saving undefined, and says so', () => {
    const slow = r.methods.find((m) => m.method === 'slow')!
    expect(slow.savings.excludingSource.perSeed).toEqual([0, null])
    expect(slow.savings.excludingSource.mean).toBeNull()
    const finding = r.findings.find(
      (f) => f.method === 'slow' && f.budget === 1 && f.accounting === 'excludingSource',
    )!
    expect(finding.verdict).toBe('not-reached')
  })
  it('variants and skips claim nothing; fast saves with 95 % confidence where the seeds agree', () => {
    const moe = r.methods.find((m) => m.method === 'moe')!
    expect(moe.variant).toBe(true)
    expect(moe.byBudget.map((b) => b.budget)).toEqual([1])
    expect(moe.savings.excludingSource.mean).toBeNull()
    expect(r.methods.find((m) => m.method === 'nope')!.status).toBe('skipped')
    expect(r.findings.some((f) => f.method === 'moe' || f.method === 'nope')).toBe(false)
    // Identical per-seed savings have zero spread: an interval of zero width above 0.
    const f = r.findings.find(
      (x) => x.method === 'fast' && x.budget === 1 && x.accounting === 'excludingSource',
    )!
    expect(f.verdict).toBe('positive')
    const pair = r.pairs.find((p) => p.budget === 1 && p.a === 'fast' && p.b === 'slow')!
    expect(pair.difference.mean).toBeNull()
  })
})
