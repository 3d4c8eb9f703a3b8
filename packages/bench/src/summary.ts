import type { TransformerSpec } from '@sprout/core'
import type { MethodRun, SourceRun } from './records.js'
import { firstReach, lossAt, savings } from './savings.js'
import { pairedDifference, type SeedStats, seedStats, type Verdict, verdict } from './stats.js'

/**
 * Savings two ways, both charging growth and operator fitting: the source's pretraining as a
 * sunk cost (LiGO, LEMON, Mango report this way) and charged to the grown model (progressive and
 * staged training report this way).
 */
export interface Accountings {
  excludingSource: SeedStats
  includingSource: SeedStats
}

/** One method at one budget, against scratch's tuned run that fully decays at that budget. */
export interface BudgetResult {
  budget: number
  steps: number
  savings: Accountings
  /** FLOPs (growth included, source excluded) to reach scratch's final loss at this budget. */
  flopsToTarget: SeedStats
  secondsToTarget: SeedStats
  /** Validation loss once the method has spent scratch's total FLOPs. */
  lossAtEqualFlops: SeedStats
  finalLoss: SeedStats
  /** Seeds in which the method reached scratch's final loss. */
  reached: number
}

export interface SeedResult {
  seed: number
  finalLoss: number | null
  savingsExcludingSource: number | null
  savingsIncludingSource: number | null
  flopsToTarget: number | null
  growthFlops: number
}

export interface MethodSummary {
  method: string
  /** The growth operator (a variant's name differs from its method). */
  operator: string
  status: 'done' | 'skipped'
  reason?: string
  /** Trains another target than the suite's: its curve is shown, no saving is claimed. */
  variant: boolean
  variantTarget?: TransformerSpec
  /** A progressive line: its growths at the largest budget ("stack@250"); it has no source. */
  progressive?: string[]
  schedule: 'suite' | 'recommended'
  scheduleNote?: string
  /** At the largest budget. */
  perSeed: SeedResult[]
  savings: Accountings
  finalLoss: SeedStats
  growthFlops: { mean: number }
  growthSeconds: { mean: number }
  byBudget: BudgetResult[]
}

export interface ScratchSummary {
  /** Every learning rate tried, with its final validation loss at every budget. */
  lrSweep: { lrMult: number; lr: number; byBudget: { budget: number; finalLoss: SeedStats }[] }[]
  /** The baseline's learning rate at the largest budget. */
  chosenLr: number
  /** Per budget: the rate with the lowest mean final loss over seeds, its loss (the target) and FLOPs. */
  byBudget: { budget: number; lrMult: number; lr: number; finalLoss: SeedStats; flopsToFinal: SeedStats }[]
}

/** One sentence-worthy fact about a method's savings: which side of zero its interval lies. */
export interface Finding {
  budget: number
  accounting: keyof Accountings
  method: string
  verdict: Verdict | 'not-reached'
  stats: SeedStats
}

/** A pair of methods whose paired per-seed savings differ (or not) with 95 % confidence. */
export interface PairFinding {
  budget: number
  a: string
  b: string
  verdict: Verdict
  difference: SeedStats
}

export interface Summary {
  seeds: number
  budgets: number[]
  source: { perSeed: (SourceRun | null)[]; flops: SeedStats; valLoss: SeedStats }
  scratch: ScratchSummary
  methods: MethodSummary[]
  findings: Finding[]
  pairs: PairFinding[]
}

const runOf = (runs: MethodRun[], name: string, seed: number, budget: number, lrMult?: number) =>
  runs.find(
    (r) =>
      r.name === name &&
      r.seed === seed &&
      r.budget === budget &&
      (lrMult === undefined || r.lrMult === lrMult),
  )

function chooseScratch(
  runs: MethodRun[],
  seeds: number,
  budgets: number[],
  baseLr: number,
  sweep: number[],
): ScratchSummary {
  const lrSweep = sweep.map((lrMult) => {
    const lr = baseLr * lrMult
    return {
      lrMult,
      lr,
      byBudget: budgets.map((budget) => ({
        budget,
        finalLoss: seedStats(
          Array.from(
            { length: seeds },
            (_, s) => runOf(runs, 'scratch', s, budget, lrMult)?.finalValLoss ?? null,
          ),
        ),
      })),
    }
  })
  const byBudget = budgets.map((budget, bi) => {
    // The tuned baseline: lowest mean final loss over seeds (one rate for all seeds, so the
    // choice does not pick each seed's lucky run).
    const best = lrSweep
      .filter((e) => e.byBudget[bi].finalLoss.mean !== null)
      .sort((a, b) => a.byBudget[bi].finalLoss.mean! - b.byBudget[bi].finalLoss.mean!)[0]
    const chosen = best ?? lrSweep[0]
    const perSeed = Array.from({ length: seeds }, (_, s) => runOf(runs, 'scratch', s, budget, chosen.lrMult))
    return {
      budget,
      lrMult: chosen.lrMult,
      lr: chosen.lr,
      finalLoss: chosen.byBudget[bi].finalLoss,
      flopsToFinal: seedStats(
        perSeed.map((r) =>
          r?.finalValLoss == null ? null : (firstReach(r.curve, r.finalValLoss)?.flops ?? null),
        ),
      ),
    }
  })
  return { lrSweep, chosenLr: byBudget.at(-1)!.lr, byBudget }
}

function budgetResult(
  runs: MethodRun[],
  name: string,
  seeds: number,
  budget: number,
  scratch: ScratchSummary['byBudget'][number],
  sources: (SourceRun | null)[],
): { result: BudgetResult; perSeed: SeedResult[] } {
  const perSeed: SeedResult[] = []
  const seconds: (number | null)[] = []
  const equal: (number | null)[] = []
  for (let s = 0; s < seeds; s++) {
    const run = runOf(runs, name, s, budget)
    const base = runOf(runs, 'scratch', s, budget, scratch.lrMult)
    const target = base?.finalValLoss ?? null
    const scratchFlops = base && target !== null ? (firstReach(base.curve, target)?.flops ?? null) : null
    const done = run?.status === 'done' && !run.variantTarget
    const reach = done && target !== null ? firstReach(run.curve, target) : null
    // Scratch that never improved on its initial loss leaves nothing to save.
    const defined = scratchFlops !== null && scratchFlops > 0
    // A progressive run has no source: everything it spent is already on its curve.
    const src = run?.stages !== undefined ? 0 : (sources[s]?.flops ?? null)
    perSeed.push({
      seed: s,
      finalLoss: run?.finalValLoss ?? null,
      savingsExcludingSource: defined && done ? savings(reach?.flops ?? null, scratchFlops) : null,
      savingsIncludingSource:
        defined && done && reach && src !== null ? savings(reach.flops + src, scratchFlops) : null,
      flopsToTarget: reach?.flops ?? null,
      growthFlops: run?.growthFlops ?? 0,
    })
    seconds.push(reach?.seconds ?? null)
    const total = base?.curve.at(-1)?.flops ?? null
    equal.push(run?.status === 'done' && total !== null ? lossAt(run.curve, total) : null)
  }
  return {
    perSeed,
    result: {
      budget,
      steps: runOf(runs, name, 0, budget)?.steps ?? 0,
      savings: {
        excludingSource: seedStats(perSeed.map((p) => p.savingsExcludingSource)),
        includingSource: seedStats(perSeed.map((p) => p.savingsIncludingSource)),
      },
      flopsToTarget: seedStats(perSeed.map((p) => p.flopsToTarget)),
      secondsToTarget: seedStats(seconds),
      lossAtEqualFlops: seedStats(equal),
      finalLoss: seedStats(perSeed.map((p) => p.finalLoss)),
      reached: perSeed.filter((p) => p.flopsToTarget !== null).length,
    },
  }
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

/**
 * Every figure of a comparison from its runs: scratch's sweep and chosen baseline per budget,
 * each method's savings per seed and budget in both accountings, and what the intervals say.
 */
export function summariseRuns(opts: {
  runs: MethodRun[]
  sources: (SourceRun | null)[]
  seeds: number
  budgets: number[]
  baseLr: number
  lrSweep: number[]
}): Summary {
  const { runs, sources, seeds } = opts
  const budgets = [...new Set(opts.budgets)].sort((a, b) => a - b)
  const scratch = chooseScratch(runs, seeds, budgets, opts.baseLr, opts.lrSweep)
  const names = [...new Set(runs.filter((r) => r.name !== 'scratch').map((r) => r.name))]
  const methods: MethodSummary[] = names.map((name) => {
    const mine = runs.filter((r) => r.name === name)
    const first = mine[0]
    const done = mine.filter((r) => r.status === 'done')
    const variant = first.variantTarget !== undefined
    const own = variant ? [budgets.at(-1)!] : budgets
    const results = own.map((b) =>
      budgetResult(runs, name, seeds, b, scratch.byBudget[budgets.indexOf(b)], sources),
    )
    const last = results.at(-1)!
    return {
      method: name,
      operator: first.method,
      status: done.length > 0 ? 'done' : 'skipped',
      reason: done.length > 0 ? undefined : first.reason,
      variant,
      variantTarget: first.variantTarget,
      ...(first.stages !== undefined
        ? {
            progressive: (
              mine.find((r) => r.budget === budgets.at(-1) && r.status === 'done')?.stages ?? []
            ).map((st) => `${st.method}@${st.step}`),
          }
        : {}),
      schedule: first.schedule,
      scheduleNote: first.scheduleNote,
      perSeed: last.perSeed,
      savings: last.result.savings,
      finalLoss: last.result.finalLoss,
      growthFlops: { mean: mean(done.map((r) => r.growthFlops)) },
      growthSeconds: { mean: mean(done.map((r) => r.growthSeconds)) },
      byBudget: results.map((r) => r.result),
    }
  })
  const measured = methods.filter((m) => m.status === 'done' && !m.variant)
  const findings: Finding[] = measured.flatMap((m) =>
    m.byBudget.flatMap((b) =>
      (['excludingSource', 'includingSource'] as const).map((accounting) => ({
        budget: b.budget,
        accounting,
        method: m.method,
        verdict: b.reached < seeds ? ('not-reached' as const) : verdict(b.savings[accounting]),
        stats: b.savings[accounting],
      })),
    ),
  )
  // The accountings differ by a per-seed constant, so the paired comparison of two methods is the
  // same in both: one list.
  const pairs: PairFinding[] = []
  for (const [bi, budget] of budgets.entries())
    for (let i = 0; i < measured.length; i++)
      for (let j = i + 1; j < measured.length; j++) {
        const a = measured[i].byBudget[bi]?.savings.excludingSource.perSeed
        const b = measured[j].byBudget[bi]?.savings.excludingSource.perSeed
        if (!a || !b) continue
        const difference = pairedDifference(a, b)
        pairs.push({
          budget,
          a: measured[i].method,
          b: measured[j].method,
          verdict: verdict(difference),
          difference,
        })
      }
  const srcFlops = seedStats(sources.map((s) => s?.flops ?? null))
  return {
    seeds,
    budgets,
    source: { perSeed: sources, flops: srcFlops, valLoss: seedStats(sources.map((s) => s?.valLoss ?? null)) },
    scratch,
    methods,
    findings,
    pairs,
  }
}
